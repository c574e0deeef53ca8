/* Fixed-size items whose memory outlives them, so that a remembered pointer can be checked. */
#ifndef SGW_UTIL_SLOTS_H
#define SGW_UTIL_SLOTS_H

#include <stddef.h>
#include <stdint.h>

/* Items are allocated SLOTS_PER_BLOCK at a time, and a block is kept until
 * slots_free: an item given back stays readable memory, and its generation,
 * which changes when it is given back, says whether it is still the item a
 * hint noted. A hint lets a caller that looked an item up once (in a hash
 * map, say) find it again without the lookup and its cache misses. */
enum { SLOTS_PER_BLOCK = 64 };

typedef struct slots_block slots_block_t;
typedef struct slots_header slots_header_t;

typedef struct slots {
    size_t stride; /* an item with its header, whole cache lines */
    slots_header_t *free_items;
    slots_block_t *blocks;
} slots_t;

/* Where an item was, and its generation then. All zero: nothing noted. */
typedef struct slot_hint {
    void *item;
    uint64_t generation;
} slot_hint_t;

/* Prepares an empty set of items of item_size bytes each. */
void slots_init(slots_t *slots, size_t item_size);

/* Returns a zeroed item, or NULL when memory is exhausted. An item and its
 * header start a cache line: its first 48 bytes are one line, read with the
 * generation a hint checks. */
void *slots_take(slots_t *slots);

/* Gives item back: a hint noted before no longer finds it. */
void slots_give(slots_t *slots, void *item);

/* Notes item in hint. */
void slots_note(slot_hint_t *hint, void *item);

/* The item hint noted, if it has not been given back since; else NULL. Only
 * hints noted from this set of items, before slots_free, may be asked. */
void *slots_hinted(const slot_hint_t *hint);

/* Frees every block: items still taken with them. */
void slots_free(slots_t *slots);

#endif
