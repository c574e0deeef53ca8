/* Fuzz target: the egress agent's address lists (egress/policy.c). Input: deny_out 0xff
 * allow_out 0xff allow_internet_access. A parsed list is sorted and merged, and its ranges,
 * written as nft writes them, parse back to the same list. */
#include <arpa/inet.h>
#include <sys/socket.h>

#include "egress/policy.h"
#include "egress/sniff.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const size_t fuzz_width[EGRESS_FAMILY_COUNT] = {4, 16};

static void check_merged(const egress_range_list_t *list, egress_family_t family) {
    size_t width = fuzz_width[family];
    for (size_t i = 0; i < list->count; i++) {
        const egress_range_t *range = &list->ranges[i];
        FUZZ_CHECK(memcmp(range->first, range->last, width) <= 0);
        if (i == 0)
            continue;
        /* Sorted, and not even adjacent to the one before (previous last + 1 < first). */
        uint8_t next[16];
        memcpy(next, list->ranges[i - 1].last, width);
        size_t byte = width;
        while (byte > 0 && ++next[byte - 1] == 0)
            byte--;
        FUZZ_CHECK(byte > 0); /* the previous range does not end at the family's last address */
        FUZZ_CHECK(memcmp(next, range->first, width) < 0);
    }
}

/* Each range as nft would get it: a block ("ADDR" or "ADDR/LEN") parses back to exactly that
 * range; "FIRST-LAST" names its two ends. */
static void check_round_trip(const egress_range_list_t lists[EGRESS_FAMILY_COUNT]) {
    for (int family = 0; family < EGRESS_FAMILY_COUNT; family++) {
        size_t width = fuzz_width[family];
        int address_family = family == EGRESS_IPV6 ? AF_INET6 : AF_INET;
        for (size_t i = 0; i < lists[family].count; i++) {
            const egress_range_t *range = &lists[family].ranges[i];
            char text[EGRESS_RANGE_TEXT_MAX + 1];
            size_t written = egress_range_format(range, (egress_family_t)family, text);
            FUZZ_CHECK(written > 0 && written < sizeof(text));
            text[written] = '\0';
            char *dash = strchr(text, '-');
            if (dash != NULL) {
                *dash = '\0';
                uint8_t first[16] = {0};
                uint8_t last[16] = {0};
                FUZZ_CHECK(inet_pton(address_family, text, first) == 1);
                FUZZ_CHECK(inet_pton(address_family, dash + 1, last) == 1);
                FUZZ_CHECK(memcmp(first, range->first, width) == 0);
                FUZZ_CHECK(memcmp(last, range->last, width) == 0);
                continue;
            }
            egress_range_list_t again[EGRESS_FAMILY_COUNT];
            memset(again, 0, sizeof(again));
            char error[256];
            FUZZ_CHECK(egress_policy_parse_list("allow_out", text, written, again, NULL, NULL,
                                                error, sizeof(error)) == 0);
            FUZZ_CHECK(again[family].count == 1 && again[1 - family].count == 0);
            FUZZ_CHECK(memcmp(again[family].ranges[0].first, range->first, width) == 0);
            FUZZ_CHECK(memcmp(again[family].ranges[0].last, range->last, width) == 0);
            for (int other = 0; other < EGRESS_FAMILY_COUNT; other++)
                free(again[other].ranges);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *parts[3];
    size_t lengths[3];
    size_t count = fuzz_split(data, size, parts, lengths, 3);
    egress_field_t fields[3] = {{0}};
    for (size_t i = 0; i < count; i++)
        fields[i] = (egress_field_t){(const char *)parts[i], lengths[i]};

    for (size_t i = 0; i < 2 && i < count; i++) {
        egress_range_list_t lists[EGRESS_FAMILY_COUNT];
        memset(lists, 0, sizeof(lists));
        char error[256];
        if (egress_policy_parse_list(i == 0 ? "deny_out" : "allow_out", fields[i].value,
                                     fields[i].length, lists, NULL, NULL, error,
                                     sizeof(error)) == 0) {
            for (int family = 0; family < EGRESS_FAMILY_COUNT; family++)
                check_merged(&lists[family], (egress_family_t)family);
            check_round_trip(lists);
        } else {
            FUZZ_CHECK(error[0] != '\0');
        }
        for (int family = 0; family < EGRESS_FAMILY_COUNT; family++)
            free(lists[family].ranges);
    }

    egress_policy_t policy;
    egress_policy_init(&policy);
    char error[256];
    if (egress_policy_parse(&policy, fields[2], fields[0], fields[1], error, sizeof(error)) == 0) {
        for (int family = 0; family < EGRESS_FAMILY_COUNT; family++) {
            check_merged(&policy.allow[family], (egress_family_t)family);
            check_merged(&policy.deny[family], (egress_family_t)family);
            check_merged(&policy.deny_narrow[family], (egress_family_t)family);
        }
        /* Domain entries: valid names, sorted without repeats, each matching itself (or, for a
         * wildcard, a name one label below it) and not the wildcard's own name. */
        for (size_t i = 0; i < policy.domains.count; i++) {
            const egress_domain_t *domain = &policy.domains.domains[i];
            egress_sniff_name_t normal;
            FUZZ_CHECK(egress_sniff_hostname(domain->name, domain->length, &normal));
            FUZZ_CHECK(normal.length == domain->length &&
                       memcmp(normal.text, domain->name, domain->length) == 0);
            if (i > 0)
                FUZZ_CHECK(policy.domains.domains[i - 1].wildcard != domain->wildcard ||
                           strcmp(policy.domains.domains[i - 1].name, domain->name) < 0);
            if (!domain->wildcard) {
                FUZZ_CHECK(egress_policy_domain_match(&policy, domain->name, domain->length));
            } else if (domain->length + 2 <= EGRESS_SNIFF_NAME_MAX) {
                char below[EGRESS_SNIFF_NAME_MAX + 1];
                int length = snprintf(below, sizeof(below), "a.%s", domain->name);
                FUZZ_CHECK(egress_policy_domain_match(&policy, below, (size_t)length));
            }
        }
    }
    egress_policy_free(&policy);
    return 0;
}
