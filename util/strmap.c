/* String-keyed hash map (chained, power-of-two buckets) for per-worker tables. */
#include "util/strmap.h"

#include <pthread.h>
#include <sodium.h>
#include <stdalign.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { STRMAP_INITIAL_BUCKETS = 64 };

/* Keys are sandbox IDs from clients' Host headers and domain names sandboxes
 * look up: their senders choose them. With an unkeyed hash (FNV-1a, before)
 * they could compute thousands of keys for one bucket offline, and each
 * lookup of one of them would walk all the others. SipHash-2-4 (libsodium's
 * crypto_shorthash) under a key drawn once per process leaves nothing to
 * compute in advance. */
static unsigned char strmap_key[crypto_shorthash_KEYBYTES];
static bool strmap_key_ready;
static pthread_once_t strmap_key_once = PTHREAD_ONCE_INIT;

static void strmap_key_make(void) {
    if (sodium_init() < 0)
        return; /* strmap_init fails */
    randombytes_buf(strmap_key, sizeof(strmap_key));
    strmap_key_ready = true;
}

static size_t strmap_hash(const char *key, size_t length) {
    uint64_t hash;
    crypto_shorthash((unsigned char *)&hash, (const unsigned char *)key, length, strmap_key);
    return (size_t)hash;
}

int strmap_init(strmap_t *map) {
    pthread_once(&strmap_key_once, strmap_key_make);
    if (!strmap_key_ready) {
        *map = (strmap_t){0};
        return -1;
    }
    map->buckets = calloc(STRMAP_INITIAL_BUCKETS, sizeof(*map->buckets));
    map->bucket_count = map->buckets ? STRMAP_INITIAL_BUCKETS : 0;
    map->count = 0;
    return map->buckets ? 0 : -1;
}

void strmap_free(strmap_t *map) {
    for (size_t i = 0; i < map->bucket_count; i++) {
        strmap_entry_t *entry = map->buckets[i];
        while (entry != NULL) {
            strmap_entry_t *next = entry->next;
            free(entry);
            entry = next;
        }
    }
    free(map->buckets);
    map->buckets = NULL;
    map->bucket_count = 0;
    map->count = 0;
}

strmap_entry_t *strmap_get(const strmap_t *map, const char *key, size_t key_length) {
    size_t hash = strmap_hash(key, key_length);
    for (strmap_entry_t *entry = map->buckets[hash & (map->bucket_count - 1)]; entry != NULL;
         entry = entry->next) {
        if (entry->hash == hash && entry->key_length == key_length &&
            memcmp(entry->key, key, key_length) == 0)
            return entry;
    }
    return NULL;
}

static void strmap_grow(strmap_t *map) {
    size_t new_count = map->bucket_count * 2;
    strmap_entry_t **new_buckets = calloc(new_count, sizeof(*new_buckets));
    if (new_buckets == NULL)
        return; /* keep the longer chains; still correct */
    for (size_t i = 0; i < map->bucket_count; i++) {
        strmap_entry_t *entry = map->buckets[i];
        while (entry != NULL) {
            strmap_entry_t *next = entry->next;
            size_t slot = entry->hash & (new_count - 1);
            entry->next = new_buckets[slot];
            new_buckets[slot] = entry;
            entry = next;
        }
    }
    free(map->buckets);
    map->buckets = new_buckets;
    map->bucket_count = new_count;
}

/* Links entry, its hash set, into map. */
static strmap_entry_t *strmap_link(strmap_t *map, strmap_entry_t *entry) {
    if (map->count >= map->bucket_count)
        strmap_grow(map);
    size_t slot = entry->hash & (map->bucket_count - 1);
    entry->next = map->buckets[slot];
    map->buckets[slot] = entry;
    map->count++;
    return entry;
}

/* An unlinked entry for key with room for value_size bytes after the key,
 * aligned for any value; NULL when memory is exhausted. */
static strmap_entry_t *strmap_entry_new(const char *key, size_t key_length, size_t value_size) {
    size_t align = alignof(max_align_t);
    size_t value_offset = (sizeof(strmap_entry_t) + key_length + 1 + align - 1) / align * align;
    strmap_entry_t *entry = malloc(value_offset + value_size);
    if (entry == NULL)
        return NULL;
    entry->hash = strmap_hash(key, key_length);
    entry->key_length = key_length;
    memcpy(entry->key, key, key_length);
    entry->key[key_length] = '\0';
    entry->value = value_size > 0 ? memset((char *)entry + value_offset, 0, value_size) : NULL;
    return entry;
}

strmap_entry_t *strmap_put(strmap_t *map, const char *key, size_t key_length, void *value) {
    strmap_entry_t *entry = strmap_entry_new(key, key_length, 0);
    if (entry == NULL)
        return NULL;
    entry->value = value;
    return strmap_link(map, entry);
}

strmap_entry_t *strmap_put_inline(strmap_t *map, const char *key, size_t key_length,
                                  size_t value_size) {
    strmap_entry_t *entry = strmap_entry_new(key, key_length, value_size);
    return entry != NULL ? strmap_link(map, entry) : NULL;
}

void strmap_remove(strmap_t *map, strmap_entry_t *entry) {
    strmap_entry_t **link = &map->buckets[entry->hash & (map->bucket_count - 1)];
    while (*link != entry)
        link = &(*link)->next;
    *link = entry->next;
    map->count--;
    free(entry);
}

void strmap_foreach(strmap_t *map, void (*visit)(strmap_t *map, strmap_entry_t *entry, void *arg),
                    void *arg) {
    for (size_t i = 0; i < map->bucket_count; i++) {
        strmap_entry_t *entry = map->buckets[i];
        while (entry != NULL) {
            strmap_entry_t *next = entry->next;
            visit(map, entry, arg);
            entry = next;
        }
    }
}
