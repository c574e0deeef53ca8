/* A sandbox's egress policy: the catalog fields parsed into merged, sorted address ranges. */
#ifndef SGW_EGRESS_POLICY_H
#define SGW_EGRESS_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum egress_family {
    EGRESS_IPV4 = 0,
    EGRESS_IPV6 = 1,
} egress_family_t;

enum {
    EGRESS_FAMILY_COUNT = 2,
    /* Entries one list may hold: far above any real policy (10,000 applies in about 0.1 s),
     * low enough that a runaway record cannot stall the agent. */
    EGRESS_POLICY_ENTRIES_MAX = 100000,
};

/* An inclusive range of addresses, big-endian; an IPv4 range uses the first 4 bytes. */
typedef struct egress_range {
    uint8_t first[16];
    uint8_t last[16];
} egress_range_t;

/* Ranges of one family, sorted, neither overlapping nor adjacent once merged. */
typedef struct egress_range_list {
    egress_range_t *ranges;
    size_t count;
    size_t capacity;
} egress_range_list_t;

/* A domain entry of allow_out (DESIGN.md, "Domain names in allow_out"): "example.com" matches
 * that name only, "*.example.com" every name below it but not the name itself. */
typedef struct egress_domain {
    char *name;    /* lower-case, no trailing dot; for a wildcard, what follows "*." */
    size_t length; /* of name */
    bool wildcard;
} egress_domain_t;

typedef struct egress_domain_list {
    egress_domain_t *domains;
    size_t count;
    size_t capacity;
} egress_domain_list_t;

typedef struct egress_policy {
    /* allow_internet_access as read (true when absent); false is folded into deny. */
    bool internet_access;
    egress_range_list_t allow[EGRESS_FAMILY_COUNT]; /* indexed by egress_family_t */
    egress_range_list_t deny[EGRESS_FAMILY_COUNT];
    /* The deny_out blocks narrower than a whole family, merged: the only denials that refuse an
     * address a domain entry resolved to (the catch-alls are what a domain entry lifts). */
    egress_range_list_t deny_narrow[EGRESS_FAMILY_COUNT];
    egress_domain_list_t domains; /* allow_out's domain entries, sorted, without duplicates */
} egress_policy_t;

/* One catalog field as Redis returns it (not NUL-terminated); value NULL means absent. */
typedef struct egress_field {
    const char *value;
    size_t length;
} egress_field_t;

/* Prepares an empty policy: everything allowed. Allocates nothing. */
void egress_policy_init(egress_policy_t *policy);

/* Frees the ranges and leaves policy empty (everything allowed). */
void egress_policy_free(egress_policy_t *policy);

/* Makes policy deny every address of both families and allow none; returns 0, or -1 when memory
 * is exhausted (policy then is empty and must still be freed). */
int egress_policy_deny_all(egress_policy_t *policy);

/* Parses the record's allow_internet_access ("true" or "false"), deny_out and allow_out
 * (comma-separated IPv4/IPv6 addresses, CIDR blocks and the word "all"; allow_out also domain
 * names and "*." wildcards) into policy, which
 * egress_policy_init prepared; absent fields are true and empty lists. Blocks are normalised
 * and merged. Returns 0, or -1 with a message naming the field and entry in error (policy then
 * holds whatever was read and must still be freed). */
int egress_policy_parse(egress_policy_t *policy, egress_field_t allow_internet_access,
                        egress_field_t deny_out, egress_field_t allow_out, char *error,
                        size_t error_size);

/* Parses one list (deny_out or allow_out) of length bytes into lists (by family) and merges them;
 * blocks narrower than a whole family also go to narrow unless it is NULL. Domain entries go to
 * domains, or are an error when it is NULL (deny_out). field names the list in errors. Returns
 * 0, or -1 with error. */
int egress_policy_parse_list(const char *field, const char *text, size_t length,
                             egress_range_list_t lists[EGRESS_FAMILY_COUNT],
                             egress_range_list_t narrow[EGRESS_FAMILY_COUNT],
                             egress_domain_list_t *domains, char *error, size_t error_size);

/* True when name[0..length) (lower-case, no trailing dot) matches a domain entry of policy. */
bool egress_policy_domain_match(const egress_policy_t *policy, const char *name, size_t length);

/* True when a connection to address (4 or 16 bytes by family), found by resolving a name that
 * matched a domain entry, may be dialled: an allow_out range covers it, or it lies neither in a
 * deny_out block narrower than its family nor in a private or special range (DESIGN.md). */
bool egress_policy_resolved_permitted(const egress_policy_t *policy, egress_family_t family,
                                      const uint8_t *address);

/* Appends a range to list (unmerged); returns 0, or -1 when memory is exhausted. */
int egress_range_list_append(egress_range_list_t *list, const egress_range_t *range);

/* Sorts list and merges overlapping and adjacent ranges in place. */
void egress_range_list_merge(egress_range_list_t *list, egress_family_t family);

/* Writes range as nft writes a set element: "ADDR", "ADDR/LEN" when it is one CIDR block, else
 * "FIRST-LAST"; returns the length written (text holds at least EGRESS_RANGE_TEXT_MAX bytes). */
size_t egress_range_format(const egress_range_t *range, egress_family_t family, char *text);

enum { EGRESS_RANGE_TEXT_MAX = 2 * 46 + 2 };

/* Entries of a policy, for the log: ranges allowed and denied over both families. */
size_t egress_policy_allow_count(const egress_policy_t *policy);
size_t egress_policy_deny_count(const egress_policy_t *policy);

#endif
