/* Per-request arena: bump allocation from chained blocks, freed all at once. */
#ifndef SGW_UTIL_ARENA_H
#define SGW_UTIL_ARENA_H

#include <stddef.h>

typedef struct arena_block arena_block_t;

/* Ordinary blocks of one size kept for reuse by the arenas that share it
 * (one thread's): a freed arena's blocks wait here instead of going back to
 * malloc, so a connection between requests can hold none at little cost. */
typedef struct arena_pool {
    arena_block_t *free; /* newest first: the block most likely still cached */
    size_t count;
    size_t limit; /* blocks beyond it are freed */
    size_t block_size;
} arena_pool_t;

typedef struct arena {
    arena_block_t *head; /* current block, newest first */
    size_t block_size;   /* size of ordinary blocks */
    arena_pool_t *pool;  /* where ordinary blocks come from and go back to; NULL: malloc */
} arena_t;

/* Prepares an empty pool of blocks holding block_size bytes, keeping at most
 * limit of them. Allocates nothing. */
void arena_pool_init(arena_pool_t *pool, size_t block_size, size_t limit);

/* Frees the blocks the pool keeps. No arena may use it afterwards. */
void arena_pool_free(arena_pool_t *pool);

/* Prepares an empty arena whose blocks hold block_size bytes. Allocates nothing. */
void arena_init(arena_t *arena, size_t block_size);

/* Prepares an empty arena that takes its ordinary blocks from pool and gives
 * them back there. Allocates nothing. */
void arena_init_pooled(arena_t *arena, arena_pool_t *pool);

/* Returns size bytes aligned to 16, or NULL when memory is exhausted. */
void *arena_alloc(arena_t *arena, size_t size);

/* Forgets every allocation and gives every block back (to the pool, if the
 * arena has one). The arena stays usable: the next allocation takes a block. */
void arena_free(arena_t *arena);

#endif
