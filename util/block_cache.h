/* Small blocks kept for reuse by one thread: allocators for libraries that take one. */
#ifndef SGW_UTIL_BLOCK_CACHE_H
#define SGW_UTIL_BLOCK_CACHE_H

#include <stddef.h>
#include <stdint.h>

/* Blocks of up to BLOCK_CACHE_LARGEST bytes are rounded up to a multiple of
 * BLOCK_CACHE_STEP and kept, once freed, for the next allocation of their
 * size; larger ones go to malloc and back. glibc keeps 7 freed blocks of a
 * size per thread; an HTTP/2 connection with hundreds of streams has hundreds
 * of each of nghttp2's objects alive, and past those 7 every allocation and
 * free takes malloc's slow path. */
enum { BLOCK_CACHE_STEP = 64, BLOCK_CACHE_LARGEST = 512 };
enum { BLOCK_CACHE_CLASSES = BLOCK_CACHE_LARGEST / BLOCK_CACHE_STEP };

/* Defined under AddressSanitizer (GCC's or clang's), where a kept block is
 * poisoned, but for its first 8 bytes (the link to the next kept block),
 * until it is handed out again: a use after free is still caught although
 * malloc never sees the free. */
#if defined(__SANITIZE_ADDRESS__)
#define BLOCK_CACHE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BLOCK_CACHE_ASAN 1
#endif
#endif

typedef struct block_cache {
    void *free[BLOCK_CACHE_CLASSES]; /* freed blocks of each size, newest first */
    uint32_t count[BLOCK_CACHE_CLASSES];
    uint32_t limit; /* blocks kept of each size; more are freed */
} block_cache_t;

/* Freed blocks of one malloc size kept for the next allocation of it, with
 * no header: a block is told by malloc_usable_size alone, so every other
 * allocation is malloc's own, byte for byte (a header and rounding on each of
 * a library's allocations would cost every idle connection memory). */
typedef struct block_stock {
    void *free; /* newest first, linked through their first bytes */
    uint32_t count;
    uint32_t limit;
    size_t size;   /* what block_stock_malloc takes from the stock */
    size_t usable; /* malloc_usable_size of a block of size */
} block_stock_t;

/* Prepares an empty cache keeping at most limit blocks of each size. */
void block_cache_init(block_cache_t *cache, uint32_t limit);

/* Frees the blocks the cache keeps. Blocks still in use stay valid and may
 * be freed (or reallocated) through the cache afterwards. */
void block_cache_clear(block_cache_t *cache);

/* malloc, calloc, realloc and free over the cache, with their contracts:
 * NULL when memory is exhausted (or calloc's product overflows); realloc to
 * 0 bytes frees and returns NULL; free and realloc take NULL. Memory is
 * aligned to 16. */
void *block_cache_malloc(block_cache_t *cache, size_t size);
void *block_cache_calloc(block_cache_t *cache, size_t count, size_t size);
void *block_cache_realloc(block_cache_t *cache, void *pointer, size_t size);
void block_cache_free(block_cache_t *cache, void *pointer);

/* Prepares an empty stock of at most limit blocks of size bytes (at least a
 * pointer's); returns 0, or -1 when memory is exhausted. */
int block_stock_init(block_stock_t *stock, size_t size, uint32_t limit);

/* malloc, realloc and free with their contracts: a block of the stock's size
 * comes from the stock when it has one, and a freed block of its usable size
 * is kept. */
void *block_stock_malloc(block_stock_t *stock, size_t size);
void *block_stock_realloc(block_stock_t *stock, void *pointer, size_t size);
void block_stock_free(block_stock_t *stock, void *pointer);

/* Frees the blocks the stock keeps. */
void block_stock_clear(block_stock_t *stock);

#endif
