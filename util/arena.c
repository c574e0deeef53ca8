/* Per-request arena: bump allocation from chained blocks, freed all at once. */
#include "util/arena.h"

#include <stdint.h>
#include <stdlib.h>

struct arena_block {
    arena_block_t *next;
    size_t size;
    size_t used;
    _Alignas(16) unsigned char data[];
};

void arena_pool_init(arena_pool_t *pool, size_t block_size, size_t limit) {
    pool->free = NULL;
    pool->count = 0;
    pool->limit = limit;
    pool->block_size = block_size;
}

void arena_pool_free(arena_pool_t *pool) {
    while (pool->free != NULL) {
        arena_block_t *next = pool->free->next;
        free(pool->free);
        pool->free = next;
    }
    pool->count = 0;
}

void arena_init(arena_t *arena, size_t block_size) {
    arena->head = NULL;
    arena->block_size = block_size;
    arena->pool = NULL;
}

void arena_init_pooled(arena_t *arena, arena_pool_t *pool) {
    arena_init(arena, pool->block_size);
    arena->pool = pool;
}

/* A block of capacity bytes: an ordinary one from the pool when it has one. */
static arena_block_t *arena_block_new(arena_t *arena, size_t capacity) {
    arena_pool_t *pool = arena->pool;
    if (pool != NULL && capacity == pool->block_size && pool->free != NULL) {
        arena_block_t *block = pool->free;
        pool->free = block->next;
        pool->count--;
        return block;
    }
    arena_block_t *block = malloc(sizeof(*block) + capacity);
    if (block != NULL)
        block->size = capacity;
    return block;
}

void *arena_alloc(arena_t *arena, size_t size) {
    size = (size + 15) & ~(size_t)15;
    arena_block_t *block = arena->head;
    if (block == NULL || block->size - block->used < size) {
        block = arena_block_new(arena, size > arena->block_size ? size : arena->block_size);
        if (block == NULL)
            return NULL;
        block->used = 0;
        block->next = arena->head;
        arena->head = block;
    }
    void *memory = block->data + block->used;
    block->used += size;
    return memory;
}

void arena_free(arena_t *arena) {
    arena_pool_t *pool = arena->pool;
    arena_block_t *block = arena->head;
    while (block != NULL) {
        arena_block_t *next = block->next;
        if (pool != NULL && block->size == pool->block_size && pool->count < pool->limit) {
            block->next = pool->free;
            pool->free = block;
            pool->count++;
        } else {
            free(block);
        }
        block = next;
    }
    arena->head = NULL;
}
