/* Small blocks kept for reuse by one thread: an allocator for a library that takes one (nghttp2).
 */
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

typedef struct block_cache {
    void *free[BLOCK_CACHE_CLASSES]; /* freed blocks of each size, newest first */
    uint32_t count[BLOCK_CACHE_CLASSES];
    uint32_t limit; /* blocks kept of each size; more are freed */
} block_cache_t;

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

#endif
