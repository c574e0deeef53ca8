/* Per-request arena: bump allocation from chained blocks, freed all at once. */
#ifndef SGW_UTIL_ARENA_H
#define SGW_UTIL_ARENA_H

#include <stddef.h>

typedef struct arena_block arena_block_t;

typedef struct arena {
    arena_block_t *head;   /* current block, newest first */
    size_t block_size;     /* size of ordinary blocks */
    arena_block_t *first;  /* the first block, kept across arena_reset */
} arena_t;

/* Prepares an empty arena whose blocks hold block_size bytes. Allocates nothing. */
void arena_init(arena_t *arena, size_t block_size);

/* Returns size bytes aligned to 16, or NULL when memory is exhausted. */
void *arena_alloc(arena_t *arena, size_t size);

/* Forgets every allocation but keeps the first block for reuse. */
void arena_reset(arena_t *arena);

/* Frees every block. The arena may be initialised again. */
void arena_free(arena_t *arena);

#endif
