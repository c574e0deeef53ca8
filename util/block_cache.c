/* Small blocks kept for reuse by one thread: allocators for libraries that take one. */
#include "util/block_cache.h"

#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#ifdef BLOCK_CACHE_ASAN
#include <sanitizer/asan_interface.h>
#define BLOCK_CACHE_POISON(block, size) ASAN_POISON_MEMORY_REGION(block, size)
#define BLOCK_CACHE_UNPOISON(block, size) ASAN_UNPOISON_MEMORY_REGION(block, size)
#else
#define BLOCK_CACHE_POISON(block, size) ((void)(block), (void)(size))
#define BLOCK_CACHE_UNPOISON(block, size) ((void)(block), (void)(size))
#endif

/* Keeps block (size usable bytes) on top of list. Under ASan it is poisoned
 * but for the link to the next kept block: LeakSanitizer does not look for
 * pointers in poisoned memory, and the blocks after it would look lost. */
static void block_keep(void **list, void *block, size_t size) {
    *(void **)block = *list;
    *list = block;
    BLOCK_CACHE_POISON((char *)block + sizeof(void *), size - sizeof(void *));
}

/* Takes the block on top of list (size usable bytes), which has one. */
static void *block_reuse(void **list, size_t size) {
    void *block = *list;
    BLOCK_CACHE_UNPOISON(block, size);
    *list = *(void **)block;
    return block;
}

/* In front of every block: what free and realloc need to know. */
typedef struct block_header {
    size_t capacity; /* usable bytes */
    size_t kind;     /* 1 + the size class of a kept size; 0: a larger block, from malloc */
} block_header_t;

_Static_assert(sizeof(block_header_t) == 16, "the header keeps malloc's 16-byte alignment");

static block_header_t *block_header(void *pointer) {
    return (block_header_t *)((char *)pointer - sizeof(block_header_t));
}

/* The usable bytes after header (char arithmetic: the block is larger than its header). */
static void *block_data(block_header_t *header) { return (char *)header + sizeof(*header); }

void block_cache_init(block_cache_t *cache, uint32_t limit) {
    memset(cache, 0, sizeof(*cache));
    cache->limit = limit;
}

void block_cache_clear(block_cache_t *cache) {
    for (size_t i = 0; i < BLOCK_CACHE_CLASSES; i++) {
        while (cache->free[i] != NULL) {
            void *next = *(void **)cache->free[i];
            free(block_header(cache->free[i]));
            cache->free[i] = next;
        }
        cache->count[i] = 0;
    }
}

/* A new block from malloc, its header filled in; NULL when memory is exhausted. */
static void *block_new(size_t capacity, size_t kind) {
    if (capacity > SIZE_MAX - sizeof(block_header_t))
        return NULL;
    block_header_t *header = malloc(sizeof(*header) + capacity);
    if (header == NULL)
        return NULL;
    *header = (block_header_t){.capacity = capacity, .kind = kind};
    return block_data(header);
}

void *block_cache_malloc(block_cache_t *cache, size_t size) {
    if (size > BLOCK_CACHE_LARGEST)
        return block_new(size, 0);
    size_t index = size == 0 ? 0 : (size - 1) / BLOCK_CACHE_STEP;
    if (cache->free[index] == NULL)
        return block_new((index + 1) * BLOCK_CACHE_STEP, index + 1);
    cache->count[index]--;
    return block_reuse(&cache->free[index], (index + 1) * BLOCK_CACHE_STEP);
}

void *block_cache_calloc(block_cache_t *cache, size_t count, size_t size) {
    if (size != 0 && count > SIZE_MAX / size)
        return NULL;
    void *block = block_cache_malloc(cache, count * size);
    if (block != NULL)
        memset(block, 0, count * size);
    return block;
}

void block_cache_free(block_cache_t *cache, void *pointer) {
    if (pointer == NULL)
        return;
    block_header_t *header = block_header(pointer);
    if (header->kind == 0) {
        free(header);
        return;
    }
    size_t index = header->kind - 1;
    if (cache->count[index] >= cache->limit) {
        free(header);
        return;
    }
    block_keep(&cache->free[index], pointer, header->capacity);
    cache->count[index]++;
}

void *block_cache_realloc(block_cache_t *cache, void *pointer, size_t size) {
    if (pointer == NULL)
        return block_cache_malloc(cache, size);
    if (size == 0) {
        block_cache_free(cache, pointer);
        return NULL;
    }
    block_header_t *header = block_header(pointer);
    if (size <= header->capacity)
        return pointer;
    if (header->kind == 0) { /* larger still: malloc's realloc may grow it in place */
        if (size > SIZE_MAX - sizeof(*header))
            return NULL;
        block_header_t *grown = realloc(header, sizeof(*header) + size);
        if (grown == NULL)
            return NULL;
        grown->capacity = size;
        return block_data(grown);
    }
    void *moved = block_cache_malloc(cache, size);
    if (moved == NULL)
        return NULL;
    memcpy(moved, pointer, header->capacity);
    block_cache_free(cache, pointer);
    return moved;
}

int block_stock_init(block_stock_t *stock, size_t size, uint32_t limit) {
    memset(stock, 0, sizeof(*stock));
    stock->limit = limit;
    stock->size = size < sizeof(void *) ? sizeof(void *) : size;
    void *probe = malloc(stock->size);
    if (probe == NULL)
        return -1;
    stock->usable = malloc_usable_size(probe);
    free(probe);
    return 0;
}

void *block_stock_malloc(block_stock_t *stock, size_t size) {
    if (size != stock->size || stock->free == NULL)
        return malloc(size);
    stock->count--;
    return block_reuse(&stock->free, stock->usable);
}

void *block_stock_realloc(block_stock_t *stock, void *pointer, size_t size) {
    (void)stock; /* a kept block is malloc's: realloc takes any */
    return realloc(pointer, size);
}

void block_stock_free(block_stock_t *stock, void *pointer) {
    if (pointer == NULL || stock->count >= stock->limit ||
        malloc_usable_size(pointer) != stock->usable) {
        free(pointer);
        return;
    }
    block_keep(&stock->free, pointer, stock->usable);
    stock->count++;
}

void block_stock_clear(block_stock_t *stock) {
    while (stock->free != NULL) {
        void *next = *(void **)stock->free;
        free(stock->free);
        stock->free = next;
    }
    stock->count = 0;
}
