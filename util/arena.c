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

void arena_init(arena_t *arena, size_t block_size) {
    arena->head = NULL;
    arena->first = NULL;
    arena->block_size = block_size;
}

void *arena_alloc(arena_t *arena, size_t size) {
    size = (size + 15) & ~(size_t)15;
    arena_block_t *block = arena->head;
    if (block == NULL || block->size - block->used < size) {
        size_t capacity = size > arena->block_size ? size : arena->block_size;
        block = malloc(sizeof(*block) + capacity);
        if (block == NULL)
            return NULL;
        block->size = capacity;
        block->used = 0;
        block->next = arena->head;
        arena->head = block;
        if (arena->first == NULL)
            arena->first = block;
    }
    void *memory = block->data + block->used;
    block->used += size;
    return memory;
}

void arena_reset(arena_t *arena) {
    arena_block_t *block = arena->head;
    while (block != NULL && block != arena->first) {
        arena_block_t *next = block->next;
        free(block);
        block = next;
    }
    arena->head = arena->first;
    if (arena->first != NULL) {
        arena->first->used = 0;
        arena->first->next = NULL;
    }
}

void arena_free(arena_t *arena) {
    arena_block_t *block = arena->head;
    while (block != NULL) {
        arena_block_t *next = block->next;
        free(block);
        block = next;
    }
    arena->head = NULL;
    arena->first = NULL;
}
