/* Small blocks kept for reuse by one thread: an allocator for libraries that take one. */
#ifndef SGW_UTIL_BLOCK_CACHE_H
#define SGW_UTIL_BLOCK_CACHE_H

#include <stddef.h>
#include <stdint.h>

/* Blocks of up to a cache's largest size (at most BLOCK_CACHE_LARGEST bytes)
 * are rounded up to a multiple of BLOCK_CACHE_STEP and kept, once freed, for
 * the next allocation of their size; larger ones go to malloc and back. glibc
 * keeps 7 freed blocks of a size per thread and none over 1,032 bytes; an
 * HTTP/2 connection with hundreds of streams has hundreds of each of
 * nghttp2's objects alive, and past those 7 every allocation and free takes
 * malloc's slow path. */
enum { BLOCK_CACHE_STEP = 64, BLOCK_CACHE_LARGEST = 1024 };

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
enum { BLOCK_CACHE_CLASSES = BLOCK_CACHE_LARGEST / BLOCK_CACHE_STEP };

typedef struct block_cache {
    void *free[BLOCK_CACHE_CLASSES]; /* freed blocks of each size, newest first */
    uint32_t count[BLOCK_CACHE_CLASSES];
    uint32_t limit;   /* blocks kept of each size; more are freed */
    uint32_t largest; /* bytes: larger blocks go to malloc */
} block_cache_t;

/* Prepares an empty cache keeping at most limit blocks of each size up to
 * largest bytes (rounded up to a multiple of BLOCK_CACHE_STEP, at most
 * BLOCK_CACHE_LARGEST). */
void block_cache_init(block_cache_t *cache, uint32_t limit, uint32_t largest);

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

#endif
