/* Fixed-size items whose memory outlives them, so that a remembered pointer can be checked. */
#include "util/slots.h"

#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

enum { SLOTS_LINE = 64 };

/* Before each item. */
struct slots_header {
    uint64_t generation;
    slots_header_t *next_free; /* while given back */
};

struct slots_block {
    slots_block_t *next;
    alignas(SLOTS_LINE) unsigned char items[];
};

_Static_assert(sizeof(slots_header_t) == 16, "an item after its header stays aligned to 16");

static slots_header_t *slots_header(void *item) {
    return (slots_header_t *)((unsigned char *)item - sizeof(slots_header_t));
}

void slots_init(slots_t *slots, size_t item_size) {
    memset(slots, 0, sizeof(*slots));
    slots->stride =
        (sizeof(slots_header_t) + item_size + SLOTS_LINE - 1) & ~(size_t)(SLOTS_LINE - 1);
}

void *slots_take(slots_t *slots) {
    if (slots->free_items == NULL) {
        size_t size = sizeof(slots_block_t) + SLOTS_PER_BLOCK * slots->stride;
        slots_block_t *block = aligned_alloc(SLOTS_LINE, size);
        if (block == NULL)
            return NULL;
        memset(block, 0, size);
        block->next = slots->blocks;
        slots->blocks = block;
        for (size_t i = SLOTS_PER_BLOCK; i-- > 0;) {
            slots_header_t *header = (slots_header_t *)(block->items + i * slots->stride);
            header->next_free = slots->free_items;
            slots->free_items = header;
        }
    }
    slots_header_t *header = slots->free_items;
    slots->free_items = header->next_free;
    header->next_free = NULL;
    void *item = header + 1;
    memset(item, 0, slots->stride - sizeof(*header));
    return item;
}

void slots_give(slots_t *slots, void *item) {
    slots_header_t *header = slots_header(item);
    header->generation++;
    header->next_free = slots->free_items;
    slots->free_items = header;
}

void slots_note(slot_hint_t *hint, void *item) {
    *hint = (slot_hint_t){.item = item, .generation = slots_header(item)->generation};
}

void *slots_hinted(const slot_hint_t *hint) {
    if (hint->item == NULL || slots_header(hint->item)->generation != hint->generation)
        return NULL;
    return hint->item;
}

void slots_free(slots_t *slots) {
    slots_block_t *block;
    while ((block = slots->blocks) != NULL) {
        slots->blocks = block->next;
        free(block);
    }
    slots->free_items = NULL;
}
