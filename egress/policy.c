/* A sandbox's egress policy: the catalog fields parsed into merged, sorted address ranges. */
#include "egress/policy.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "egress/sniff.h"
#include "util/cidr.h"
#include "util/error.h"

/* The longest entry worth reading: "*." and a 253-byte name with its trailing dot. */
#define EGRESS_POLICY_ENTRY_MAX 256
/* How much of a bad entry an error message quotes. */
#define EGRESS_POLICY_QUOTE_MAX 64

static const size_t egress_family_width[EGRESS_FAMILY_COUNT] = {4, 16};
static const unsigned egress_family_bits[EGRESS_FAMILY_COUNT] = {32, 128};

/* Copies text[0..length) for an error message: at most EGRESS_POLICY_QUOTE_MAX bytes, anything
 * unprintable as "?", so a hostile record cannot forge log lines. */
static void egress_policy_quote(const char *text, size_t length, char *out, size_t out_size) {
    size_t written = 0;
    for (size_t i = 0; i < length && written + 4 < out_size; i++) {
        if (i == EGRESS_POLICY_QUOTE_MAX) {
            memcpy(out + written, "...", 3);
            written += 3;
            break;
        }
        unsigned char c = (unsigned char)text[i];
        out[written++] = c >= 0x20 && c < 0x7f && c != '"' ? (char)c : '?';
    }
    out[written] = '\0';
}

void egress_policy_init(egress_policy_t *policy) {
    memset(policy, 0, sizeof(*policy));
    policy->internet_access = true;
}

static void egress_range_list_free(egress_range_list_t *list) {
    free(list->ranges);
    list->ranges = NULL;
    list->count = 0;
    list->capacity = 0;
}

static void egress_domain_list_free(egress_domain_list_t *list) {
    for (size_t i = 0; i < list->count; i++)
        free(list->domains[i].name);
    free(list->domains);
    memset(list, 0, sizeof(*list));
}

void egress_policy_free(egress_policy_t *policy) {
    for (int family = 0; family < EGRESS_FAMILY_COUNT; family++) {
        egress_range_list_free(&policy->allow[family]);
        egress_range_list_free(&policy->deny[family]);
        egress_range_list_free(&policy->deny_narrow[family]);
    }
    egress_domain_list_free(&policy->domains);
    egress_policy_init(policy);
}

/* Appends a copy of name; returns 0, or -1 when memory is exhausted. */
static int egress_domain_list_append(egress_domain_list_t *list, const char *name, size_t length,
                                     bool wildcard) {
    if (list->count == list->capacity) {
        size_t capacity = list->capacity == 0 ? 8 : list->capacity * 2;
        egress_domain_t *domains = realloc(list->domains, capacity * sizeof(*domains));
        if (domains == NULL)
            return -1;
        list->domains = domains;
        list->capacity = capacity;
    }
    char *copy = strndup(name, length);
    if (copy == NULL)
        return -1;
    list->domains[list->count++] = (egress_domain_t){copy, length, wildcard};
    return 0;
}

static int egress_domain_compare(const void *left, const void *right) {
    const egress_domain_t *a = left;
    const egress_domain_t *b = right;
    if (a->wildcard != b->wildcard)
        return a->wildcard ? 1 : -1;
    return strcmp(a->name, b->name);
}

/* Sorts the list and drops repeated entries, so equal policies hold equal lists. */
static void egress_domain_list_normalise(egress_domain_list_t *list) {
    if (list->count < 2)
        return;
    qsort(list->domains, list->count, sizeof(*list->domains), egress_domain_compare);
    size_t kept = 0;
    for (size_t i = 1; i < list->count; i++) {
        if (egress_domain_compare(&list->domains[kept], &list->domains[i]) == 0) {
            free(list->domains[i].name);
            continue;
        }
        list->domains[++kept] = list->domains[i];
    }
    list->count = kept + 1;
}

bool egress_policy_domain_match(const egress_policy_t *policy, const char *name, size_t length) {
    for (size_t i = 0; i < policy->domains.count; i++) {
        const egress_domain_t *domain = &policy->domains.domains[i];
        if (!domain->wildcard) {
            if (length == domain->length && memcmp(name, domain->name, length) == 0)
                return true;
            continue;
        }
        /* "*.example.com": a name ending in ".example.com" with at least one label before it. */
        if (length > domain->length + 1 && name[length - domain->length - 1] == '.' &&
            memcmp(name + length - domain->length, domain->name, domain->length) == 0)
            return true;
    }
    return false;
}

int egress_range_list_append(egress_range_list_t *list, const egress_range_t *range) {
    if (list->count == list->capacity) {
        size_t capacity = list->capacity == 0 ? 8 : list->capacity * 2;
        egress_range_t *ranges = realloc(list->ranges, capacity * sizeof(*ranges));
        if (ranges == NULL)
            return -1;
        list->ranges = ranges;
        list->capacity = capacity;
    }
    list->ranges[list->count++] = *range;
    return 0;
}

/* The range of every address of family. */
static egress_range_t egress_range_everything(egress_family_t family) {
    egress_range_t range;
    memset(&range, 0, sizeof(range));
    memset(range.last, 0xff, egress_family_width[family]);
    return range;
}

int egress_policy_deny_all(egress_policy_t *policy) {
    egress_policy_free(policy);
    policy->internet_access = false;
    for (int family = 0; family < EGRESS_FAMILY_COUNT; family++) {
        egress_range_t everything = egress_range_everything((egress_family_t)family);
        if (egress_range_list_append(&policy->deny[family], &everything) != 0) {
            egress_policy_free(policy);
            return -1;
        }
    }
    return 0;
}

/* Ranges sort by their first address; bytes past an IPv4 address are zero, so 16 always works. */
static int egress_range_compare(const void *left, const void *right) {
    return memcmp(((const egress_range_t *)left)->first, ((const egress_range_t *)right)->first,
                  sizeof(((const egress_range_t *)left)->first));
}

/* Writes address + 1 into next; returns false when address is the family's last one. */
static bool egress_address_successor(const uint8_t *address, size_t width, uint8_t *next) {
    memcpy(next, address, width);
    for (size_t i = width; i-- > 0;) {
        if (++next[i] != 0)
            return true;
    }
    return false;
}

void egress_range_list_merge(egress_range_list_t *list, egress_family_t family) {
    if (list->count < 2)
        return;
    size_t width = egress_family_width[family];
    qsort(list->ranges, list->count, sizeof(*list->ranges), egress_range_compare);
    size_t kept = 0;
    for (size_t i = 1; i < list->count; i++) {
        egress_range_t *current = &list->ranges[kept];
        const egress_range_t *next = &list->ranges[i];
        uint8_t after_current[16];
        /* The current range ends at the family's last address: it swallows everything after. */
        bool touches = !egress_address_successor(current->last, width, after_current) ||
                       memcmp(next->first, after_current, width) <= 0;
        if (touches) {
            if (memcmp(next->last, current->last, width) > 0)
                memcpy(current->last, next->last, width);
            continue;
        }
        list->ranges[++kept] = *next;
    }
    list->count = kept + 1;
}

/* Reads "ADDR" or "ADDR/LEN" (text NUL-terminated, trimmed) into range; returns 0, or -1 with an
 * error about field's entry. */
static int egress_policy_parse_block(const char *field, const char *text, egress_range_t *range,
                                     egress_family_t *family, char *error, size_t error_size) {
    cidr_t block;
    cidr_status_t status = cidr_parse(text, &block);
    *family = block.family == AF_INET6 ? EGRESS_IPV6 : EGRESS_IPV4;
    switch (status) {
    case CIDR_OK:
        break;
    case CIDR_BAD_ADDRESS:
        return error_format(error, error_size,
                            "%s: \"%s\" is not an IPv4 or IPv6 address, a CIDR block or \"all\"",
                            field, text);
    case CIDR_BAD_PREFIX:
        return error_format(error, error_size,
                            "%s: \"%s\" has a bad prefix length (write ADDR/LEN)", field, text);
    case CIDR_PREFIX_RANGE:
        return error_format(error, error_size,
                            "%s: \"%s\": the prefix length of an %s block is 0 to %u", field, text,
                            *family == EGRESS_IPV6 ? "IPv6" : "IPv4", egress_family_bits[*family]);
    case CIDR_HOST_BITS: {
        char network[INET6_ADDRSTRLEN];
        inet_ntop(block.family, block.address, network, sizeof(network));
        return error_format(error, error_size, "%s: \"%s\" has host bits set (the block is %s/%u)",
                            field, text, network, block.prefix);
    }
    }

    /* first = the network, last = it with every host bit set. */
    size_t width = egress_family_width[*family];
    memset(range, 0, sizeof(*range));
    memcpy(range->first, block.address, width);
    memcpy(range->last, block.address, width);
    for (unsigned bit = block.prefix; bit < egress_family_bits[*family]; bit++)
        range->last[bit / 8] |= (uint8_t)(0x80u >> (bit % 8));
    return 0;
}

/* What a list's entries may be, for error messages. */
static const char *egress_policy_entry_kinds(const egress_domain_list_t *domains) {
    return domains != NULL ? "an IPv4 or IPv6 address, a CIDR block, a domain name or \"all\""
                           : "an IPv4 or IPv6 address, a CIDR block or \"all\"";
}

/* An entry is read as a domain name when it has a letter or "*" and no ":" or "/" (which only
 * addresses and blocks have): IPv4 literals are all digits, IPv6 ones have colons. */
static bool egress_policy_looks_like_domain(const char *entry) {
    if (strpbrk(entry, ":/") != NULL)
        return false;
    for (const char *c = entry; *c != '\0'; c++) {
        if (*c == '*' || (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z'))
            return true;
    }
    return false;
}

/* Reads entry (NUL-terminated, trimmed) as "NAME" or "*.NAME" into domains, or fails with an
 * error about field's entry (domains NULL: this list takes no domain names). */
static int egress_policy_parse_domain(const char *field, const char *entry,
                                      egress_domain_list_t *domains, char *error,
                                      size_t error_size) {
    char quoted[EGRESS_POLICY_QUOTE_MAX + 8];
    egress_policy_quote(entry, strlen(entry), quoted, sizeof(quoted));
    if (domains == NULL)
        return error_format(error, error_size,
                            "%s: \"%s\" is a domain name; %s takes addresses and CIDR blocks only "
                            "(domain names belong in allow_out)",
                            field, quoted, field);
    bool wildcard = entry[0] == '*' && entry[1] == '.';
    const char *name = wildcard ? entry + 2 : entry;
    egress_sniff_name_t normal;
    if (!egress_sniff_hostname(name, strlen(name), &normal))
        return error_format(
            error, error_size,
            "%s: \"%s\" is not a domain name (labels of 1 to 63 letters, digits and "
            "inner hyphens, at most 253 characters, \"*.\" only in front)",
            field, quoted);
    if (egress_domain_list_append(domains, normal.text, normal.length, wildcard) != 0)
        return error_format(error, error_size, "out of memory");
    return 0;
}

int egress_policy_parse_list(const char *field, const char *text, size_t length,
                             egress_range_list_t lists[EGRESS_FAMILY_COUNT],
                             egress_range_list_t narrow[EGRESS_FAMILY_COUNT],
                             egress_domain_list_t *domains, char *error, size_t error_size) {
    static const char blanks[] = " \t\r\n";
    /* An empty (or blank) value is an empty list, as the control plane writes "no entries". */
    size_t blank = 0;
    while (blank < length && strchr(blanks, text[blank]) != NULL && text[blank] != '\0')
        blank++;
    if (blank == length)
        return 0;

    size_t entry_count = 0;
    size_t position = 0;
    for (;;) {
        const char *comma = memchr(text + position, ',', length - position);
        size_t end = comma != NULL ? (size_t)(comma - text) : length;
        size_t start = position;
        entry_count++;
        while (start < end && text[start] != '\0' && strchr(blanks, text[start]) != NULL)
            start++;
        size_t stop = end;
        while (stop > start && text[stop - 1] != '\0' && strchr(blanks, text[stop - 1]) != NULL)
            stop--;
        size_t entry_length = stop - start;
        if (entry_count > EGRESS_POLICY_ENTRIES_MAX)
            return error_format(error, error_size, "%s: more than %d entries", field,
                                EGRESS_POLICY_ENTRIES_MAX);
        if (entry_length == 0)
            return error_format(error, error_size, "%s: entry %zu is empty (a stray comma?)", field,
                                entry_count);
        if (entry_length > EGRESS_POLICY_ENTRY_MAX ||
            memchr(text + start, '\0', entry_length) != NULL) {
            char quoted[EGRESS_POLICY_QUOTE_MAX + 8];
            egress_policy_quote(text + start, entry_length, quoted, sizeof(quoted));
            return error_format(error, error_size, "%s: \"%s\" is not %s", field, quoted,
                                egress_policy_entry_kinds(domains));
        }
        char entry[EGRESS_POLICY_ENTRY_MAX + 1];
        memcpy(entry, text + start, entry_length);
        entry[entry_length] = '\0';
        for (size_t i = 0; i < entry_length; i++) {
            unsigned char c = (unsigned char)entry[i];
            if (c < 0x20 || c >= 0x7f || c == '"') {
                char quoted[EGRESS_POLICY_QUOTE_MAX + 8];
                egress_policy_quote(entry, entry_length, quoted, sizeof(quoted));
                return error_format(error, error_size, "%s: \"%s\" is not %s", field, quoted,
                                    egress_policy_entry_kinds(domains));
            }
        }

        if (strcasecmp(entry, "all") == 0) {
            for (int family = 0; family < EGRESS_FAMILY_COUNT; family++) {
                egress_range_t everything = egress_range_everything((egress_family_t)family);
                if (egress_range_list_append(&lists[family], &everything) != 0)
                    return error_format(error, error_size, "out of memory");
            }
        } else if (egress_policy_looks_like_domain(entry)) {
            if (egress_policy_parse_domain(field, entry, domains, error, error_size) != 0)
                return -1;
        } else {
            egress_range_t range;
            egress_family_t family;
            if (egress_policy_parse_block(field, entry, &range, &family, error, error_size) != 0)
                return -1;
            if (egress_range_list_append(&lists[family], &range) != 0)
                return error_format(error, error_size, "out of memory");
            egress_range_t everything = egress_range_everything(family);
            if (narrow != NULL && memcmp(&range, &everything, sizeof(range)) != 0 &&
                egress_range_list_append(&narrow[family], &range) != 0)
                return error_format(error, error_size, "out of memory");
        }
        if (comma == NULL)
            break;
        position = end + 1;
    }
    for (int family = 0; family < EGRESS_FAMILY_COUNT; family++) {
        egress_range_list_merge(&lists[family], (egress_family_t)family);
        if (narrow != NULL)
            egress_range_list_merge(&narrow[family], (egress_family_t)family);
    }
    if (domains != NULL)
        egress_domain_list_normalise(domains);
    return 0;
}

int egress_policy_parse(egress_policy_t *policy, egress_field_t allow_internet_access,
                        egress_field_t deny_out, egress_field_t allow_out, char *error,
                        size_t error_size) {
    if (error != NULL && error_size > 0)
        error[0] = '\0';
    policy->internet_access = true;
    if (allow_internet_access.value != NULL) {
        const char *value = allow_internet_access.value;
        size_t length = allow_internet_access.length;
        if (length == 4 && memcmp(value, "true", 4) == 0) {
            policy->internet_access = true;
        } else if (length == 5 && memcmp(value, "false", 5) == 0) {
            policy->internet_access = false;
        } else {
            char quoted[EGRESS_POLICY_QUOTE_MAX + 8];
            egress_policy_quote(value, length, quoted, sizeof(quoted));
            return error_format(error, error_size,
                                "allow_internet_access: \"%s\" is not true or false", quoted);
        }
    }
    if (deny_out.value != NULL &&
        egress_policy_parse_list("deny_out", deny_out.value, deny_out.length, policy->deny,
                                 policy->deny_narrow, NULL, error, error_size) != 0)
        return -1;
    if (allow_out.value != NULL &&
        egress_policy_parse_list("allow_out", allow_out.value, allow_out.length, policy->allow,
                                 NULL, &policy->domains, error, error_size) != 0)
        return -1;
    /* DESIGN.md: allow_internet_access false is exactly deny_out = all traffic. */
    if (!policy->internet_access) {
        for (int family = 0; family < EGRESS_FAMILY_COUNT; family++) {
            egress_range_t everything = egress_range_everything((egress_family_t)family);
            if (egress_range_list_append(&policy->deny[family], &everything) != 0)
                return error_format(error, error_size, "out of memory");
            egress_range_list_merge(&policy->deny[family], (egress_family_t)family);
        }
    }
    return 0;
}

size_t egress_range_format(const egress_range_t *range, egress_family_t family, char *text) {
    int address_family = family == EGRESS_IPV6 ? AF_INET6 : AF_INET;
    unsigned bits = egress_family_bits[family];

    /* The bits first and last share, then: is the rest 0...0 in first and 1...1 in last? */
    unsigned common = 0;
    while (common < bits) {
        uint8_t mask = (uint8_t)(0x80u >> (common % 8));
        if ((range->first[common / 8] & mask) != (range->last[common / 8] & mask))
            break;
        common++;
    }
    bool block = true;
    for (unsigned bit = common; bit < bits && block; bit++) {
        uint8_t mask = (uint8_t)(0x80u >> (bit % 8));
        if ((range->first[bit / 8] & mask) != 0 || (range->last[bit / 8] & mask) == 0)
            block = false;
    }

    inet_ntop(address_family, range->first, text, INET6_ADDRSTRLEN);
    size_t length = strlen(text);
    if (block) {
        if (common < bits)
            length += (size_t)snprintf(text + length, EGRESS_RANGE_TEXT_MAX - length, "/%u",
                                       common);
        return length;
    }
    text[length++] = '-';
    inet_ntop(address_family, range->last, text + length, INET6_ADDRSTRLEN);
    return length + strlen(text + length);
}

size_t egress_policy_allow_count(const egress_policy_t *policy) {
    return policy->allow[EGRESS_IPV4].count + policy->allow[EGRESS_IPV6].count;
}

size_t egress_policy_deny_count(const egress_policy_t *policy) {
    return policy->deny[EGRESS_IPV4].count + policy->deny[EGRESS_IPV6].count;
}

/* True when a range of list (merged: sorted, disjoint) holds address. */
static bool egress_range_list_contains(const egress_range_list_t *list, egress_family_t family,
                                       const uint8_t *address) {
    size_t width = egress_family_width[family];
    size_t low = 0;
    size_t high = list->count;
    while (low < high) {
        size_t middle = low + (high - low) / 2;
        const egress_range_t *range = &list->ranges[middle];
        if (memcmp(address, range->first, width) < 0)
            high = middle;
        else if (memcmp(address, range->last, width) > 0)
            low = middle + 1;
        else
            return true;
    }
    return false;
}

/* Where a name must never lead (DESIGN.md, "Domain names in allow_out"): the node's own and
 * other non-public networks (RFC 6890), and IPv6 prefixes that embed an IPv4 address, through
 * which any of those could be reached again. */
static const char *const egress_policy_special_text[] = {
    "0.0.0.0/8",     "10.0.0.0/8",     "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12", "192.168.0.0/16", "224.0.0.0/4",   "240.0.0.0/4", "::/128",
    "::1/128",       "::ffff:0:0/96",  "64:ff9b::/96",  "2002::/16",   "fc00::/7",
    "fe80::/10",     "ff00::/8",
};
enum {
    EGRESS_POLICY_SPECIAL_COUNT = sizeof(egress_policy_special_text) / sizeof(char *),
};

/* Parsed once: every resolved address is checked against them. */
static cidr_t egress_policy_special[EGRESS_POLICY_SPECIAL_COUNT];
static pthread_once_t egress_policy_special_once = PTHREAD_ONCE_INIT;

static void egress_policy_special_parse(void) {
    for (size_t i = 0; i < EGRESS_POLICY_SPECIAL_COUNT; i++)
        cidr_parse(egress_policy_special_text[i], &egress_policy_special[i]);
}

static bool egress_policy_special_address(egress_family_t family, const uint8_t *address) {
    pthread_once(&egress_policy_special_once, egress_policy_special_parse);
    int address_family = family == EGRESS_IPV6 ? AF_INET6 : AF_INET;
    for (size_t i = 0; i < EGRESS_POLICY_SPECIAL_COUNT; i++) {
        if (cidr_contains(&egress_policy_special[i], address_family, address))
            return true;
    }
    return false;
}

bool egress_policy_resolved_permitted(const egress_policy_t *policy, egress_family_t family,
                                      const uint8_t *address) {
    if (egress_range_list_contains(&policy->allow[family], family, address))
        return true;
    return !egress_range_list_contains(&policy->deny_narrow[family], family, address) &&
           !egress_policy_special_address(family, address);
}
