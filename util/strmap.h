/* String-keyed hash map (chained, power-of-two buckets, keyed hash) for per-worker tables. */
#ifndef SGW_UTIL_STRMAP_H
#define SGW_UTIL_STRMAP_H

#include <stddef.h>

typedef struct strmap_entry {
    struct strmap_entry *next;
    size_t hash;
    void *value;
    size_t key_length;
    char key[]; /* NUL-terminated copy */
} strmap_entry_t;

typedef struct strmap {
    strmap_entry_t **buckets;
    size_t bucket_count; /* a power of two */
    size_t count;
} strmap_t;

/* Prepares an empty map; returns 0, or -1 when memory is exhausted (or
 * libsodium, whose keyed hash the map uses, cannot start). */
int strmap_init(strmap_t *map);

/* Frees the map's entries (not the values they point to). */
void strmap_free(strmap_t *map);

/* Returns the entry for key, or NULL. */
strmap_entry_t *strmap_get(const strmap_t *map, const char *key, size_t key_length);

/* Inserts key with value; returns the new entry, or NULL when memory is exhausted.
 * The key must not be present yet. */
strmap_entry_t *strmap_put(strmap_t *map, const char *key, size_t key_length, void *value);

/* Inserts key with a zeroed value of value_size bytes inside the entry's own
 * allocation (entry->value points to it): a lookup then reads one block of
 * memory instead of two, which matters when the map is too large to stay in
 * the cache. The value goes with the entry (strmap_remove, strmap_free).
 * Returns the new entry, or NULL when memory is exhausted. The key must not
 * be present yet. */
strmap_entry_t *strmap_put_inline(strmap_t *map, const char *key, size_t key_length,
                                  size_t value_size);

/* Unlinks and frees entry, which must belong to map (an inline value with it). */
void strmap_remove(strmap_t *map, strmap_entry_t *entry);

/* Calls visit for each entry; visit may remove the entry it is given. */
void strmap_foreach(strmap_t *map, void (*visit)(strmap_t *map, strmap_entry_t *entry, void *arg),
                    void *arg);

#endif
