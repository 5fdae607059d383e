/* Tests of the JSON Schema validator (rl_schema_compile / rl_schema_check): the draft2020-12
 * files of the JSON-Schema-Test-Suite for the keywords the issue lists, remote references
 * served from the suite's remotes/ folder by a resolver (no network); then messages,
 * errors, limits, ECMAScript patterns, draft-07 spellings, threads and allocation
 * failures. A test group is skipped only when compiling its schema says the validator
 * does not implement something (RL_ERR_UNSUPPORTED) or a URI is unknown (RL_ERR_NOT_FOUND);
 * the skips are counted and printed with their reasons. */
#include "test.h"

#include "ruvllm.h"
#include "util/util.h"

#include <jansson.h>
#include <pthread.h>

/* The draft2020-12 files of the keywords the issue lists, then files of keywords the
 * validator implements beyond that list (counted separately). */
// clang-format off
static const char *const SUITE_FILES[] = {
    "type", "properties", "required", "additionalProperties", "enum", "const", "anyOf",
    "oneOf", "allOf", "ref", "defs", "items", "prefixItems", "minItems", "maxItems",
    "minLength", "maxLength", "pattern", "minimum", "maximum", "exclusiveMinimum",
    "exclusiveMaximum", "refRemote",
    NULL,
    "unevaluatedProperties", "unevaluatedItems", "not", "if-then-else", "uniqueItems",
    "contains", "minContains", "maxContains", "multipleOf", "patternProperties",
    "propertyNames", "dependentRequired", "dependentSchemas", "minProperties",
    "maxProperties", "boolean_schema", "default", "format"};
// clang-format on

/* ---- the resolver: http://localhost:1234/X -> remotes/X ------------------------------ */

typedef struct remotes {
    char *text; /* the last document handed out */
    int calls;
} remotes;

static const char *resolve_remote(void *user, const char *uri, size_t *len) {
    remotes *r = user;
    static const char prefix[] = "http://localhost:1234/";
    r->calls++;
    free(r->text);
    r->text = NULL;
    if (strncmp(uri, prefix, sizeof prefix - 1)) return NULL;
    char rel[512];
    snprintf(rel, sizeof rel, "testdata/json-schema-test-suite/remotes/%s",
             uri + sizeof prefix - 1);
    size_t n;
    unsigned char *d = rl_test_read_file(rl_test_data(rel), &n);
    if (!d) return NULL;
    r->text = (char *)d;
    *len = n;
    return r->text;
}

static json_t *load_json_file(const char *path) {
    json_error_t je;
    json_t *j = json_load_file(path, JSON_ALLOW_NUL, &je);
    if (!j) j = json_load_file(path, JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &je);
    return j;
}

static char *dump(const json_t *v) {
    return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
}

TEST(suite_draft2020_12) {
    int pass = 0, fail = 0, skipped = 0, groups_skipped = 0, files = 0;
    int phase = 0; /* 0: the keywords, 1: the others */
    remotes rem = {0};
    for (size_t f = 0; f <= RL_ARRAY_LEN(SUITE_FILES); f++) {
        if (f == RL_ARRAY_LEN(SUITE_FILES) || !SUITE_FILES[f]) {
            fprintf(stderr,
                    "  JSON-Schema-Test-Suite draft2020-12, %s: %d files, %d passed, %d failed, "
                    "%d skipped (%d groups)\n",
                    phase ? "other keywords" : "the listed keywords", files, pass, fail, skipped,
                    groups_skipped);
            if (phase == 0) {
                CHECK(pass >= 500);
                CHECK(rem.calls > 0);
            } else {
                CHECK(pass >= 300);
            }
            CHECK_EQ_INT(fail, 0);
            pass = fail = skipped = groups_skipped = files = 0;
            phase++;
            continue;
        }
        char rel[256];
        snprintf(rel, sizeof rel, "testdata/json-schema-test-suite/tests/draft2020-12/%s.json",
                 SUITE_FILES[f]);
        json_t *groups = load_json_file(rl_test_data(rel));
        if (!groups) {
            if (!strncmp(SUITE_FILES[f], "exclusive", 9)) continue;
            SKIP("%s not found (RUVLLM_TESTDATA)", rel);
        }
        files++;
        size_t gi;
        json_t *g;
        json_array_foreach(groups, gi, g) {
            const char *gdesc = json_string_value(json_object_get(g, "description"));
            json_t *tests = json_object_get(g, "tests");
            char *stext = dump(json_object_get(g, "schema"));
            rl_schema_params p = rl_schema_default_params();
            p.resolve = resolve_remote;
            p.resolve_user = &rem;
            rl_schema *s = NULL;
            char err[512];
            rl_status st = rl_schema_compile(stext, strlen(stext), &p, &s, err, sizeof err);
            free(stext);
            if (st == RL_ERR_UNSUPPORTED || st == RL_ERR_NOT_FOUND) {
                groups_skipped++;
                skipped += (int)json_array_size(tests);
                fprintf(stderr, "  skipped %s.json \"%s\" (%zu tests): %s\n", SUITE_FILES[f], gdesc,
                        json_array_size(tests), err);
                continue;
            }
            CHECKF(st == RL_OK, "%s.json \"%s\": compile: %s: %s", SUITE_FILES[f], gdesc,
                   rl_status_str(st), err);
            if (st != RL_OK) {
                fail += (int)json_array_size(tests);
                continue;
            }
            size_t ti;
            json_t *t;
            json_array_foreach(tests, ti, t) {
                char *data = dump(json_object_get(t, "data"));
                bool want = json_is_true(json_object_get(t, "valid"));
                bool valid = !want;
                st = rl_schema_check(s, data, strlen(data), &valid, err, sizeof err);
                bool ok = st == RL_OK && valid == want;
                CHECKF(ok, "%s.json \"%s\" / \"%s\": data %s: want %s, got %s (%s)", SUITE_FILES[f],
                       gdesc, json_string_value(json_object_get(t, "description")), data,
                       want ? "valid" : "invalid",
                       st != RL_OK ? rl_status_str(st)
                       : valid     ? "valid"
                                   : "invalid",
                       err);
                if (ok)
                    pass++;
                else
                    fail++;
                /* a failure comes with a message that names the place */
                if (st == RL_OK && !valid) CHECKF(err[0] == '#', "message: %s", err);
                free(data);
            }
            rl_schema_free(s);
        }
        json_decref(groups);
    }
    free(rem.text);
}

/* ---- unit tests --------------------------------------------------------------------- */

static bool V(const char *schema, const char *inst) {
    bool valid = false;
    char err[512];
    rl_status st = rl_schema_validate(schema, inst, &valid, err, sizeof err);
    CHECKF(st == RL_OK, "%s / %s: %s: %s", schema, inst, rl_status_str(st), err);
    return valid;
}

static const char *MSG(const char *schema, const char *inst) {
    static char err[512];
    bool valid = true;
    rl_status st = rl_schema_validate(schema, inst, &valid, err, sizeof err);
    CHECK(st == RL_OK && !valid);
    return err;
}

static rl_status COMPILE(const char *schema, uint32_t flags, char *err, size_t n) {
    rl_schema_params p = rl_schema_default_params();
    p.flags = flags;
    rl_schema *s = NULL;
    rl_status st = rl_schema_compile(schema, strlen(schema), &p, &s, err, n);
    CHECK((st == RL_OK) == (s != NULL));
    rl_schema_free(s);
    return st;
}

TEST(messages) {
    CHECK_STR(MSG("{\"items\": {\"maximum\": 3}}", "[1, 5]"),
              "#/1: 5 is greater than the maximum 3 (#/items/maximum)");
    CHECK_STR(MSG("{\"required\": [\"a\"]}", "{}"),
              "#: the required property \"a\" is missing (#/required)");
    CHECK_STR(MSG("{\"properties\": {\"a/b\": {\"type\": \"string\"}}}", "{\"a/b\": 1}"),
              "#/a~1b: integer is not of the allowed type (#/properties/a~1b/type)");
    CHECK(strstr(MSG("{\"anyOf\": [{\"type\": \"string\"}, {\"minimum\": 5}]}", "1"),
                 "none of the alternatives (#/anyOf)"));
    CHECK(
        strstr(MSG("{\"$defs\": {\"s\": {\"maxLength\": 2}}, \"$ref\": \"#/$defs/s\"}", "\"abc\""),
               "(#/$defs/s/maxLength)"));
}

TEST(keywords_beyond_the_suite_list) {
    /* multipleOf, not, if/then/else, uniqueItems, contains, dependent*, propertyNames */
    CHECK(V("{\"multipleOf\": 0.01}", "0.07"));
    CHECK(!V("{\"multipleOf\": 0.01}", "0.075"));
    CHECK(V("{\"multipleOf\": 3}", "-9"));
    CHECK(!V("{\"multipleOf\": 3}", "10"));
    CHECK(!V("{\"not\": {\"type\": \"null\"}}", "null"));
    CHECK(V("{\"if\": {\"minimum\": 10}, \"then\": {\"multipleOf\": 2}}", "12"));
    CHECK(!V("{\"if\": {\"minimum\": 10}, \"then\": {\"multipleOf\": 2}}", "13"));
    CHECK(V("{\"if\": {\"minimum\": 10}, \"then\": {\"multipleOf\": 2}}", "3"));
    CHECK(!V("{\"uniqueItems\": true}", "[1, {\"a\": [1.0]}, {\"a\": [1]}]"));
    CHECK(V("{\"uniqueItems\": true}", "[1, true, \"1\"]"));
    CHECK(V("{\"contains\": {\"const\": 2}, \"maxContains\": 1}", "[1, 2, 3]"));
    CHECK(!V("{\"contains\": {\"const\": 2}, \"maxContains\": 1}", "[2, 2]"));
    CHECK(!V("{\"contains\": {\"const\": 2}}", "[]"));
    CHECK(!V("{\"dependentRequired\": {\"a\": [\"b\"]}}", "{\"a\": 1}"));
    CHECK(V("{\"dependentRequired\": {\"a\": [\"b\"]}}", "{\"b\": 1}"));
    CHECK(!V("{\"dependentSchemas\": {\"a\": {\"required\": [\"c\"]}}}", "{\"a\": 1}"));
    CHECK(!V("{\"propertyNames\": {\"maxLength\": 2}}", "{\"abc\": 1}"));
    CHECK(!V("{\"minProperties\": 2}", "{\"a\": 1}"));
    CHECK(!V("{\"maxProperties\": 0}", "{\"a\": 1}"));
    /* format is an annotation in 2020-12 */
    CHECK(V("{\"format\": \"date\"}", "\"not a date\""));
    /* big integers and equality of 1 and 1.0 */
    CHECK(V("{\"type\": \"integer\"}", "123456789012345678901234567890"));
    CHECK(V("{\"const\": 1}", "1.0"));
    CHECK(V("{\"enum\": [{\"a\": [1, 2]}]}", "{\"a\": [1.0, 2e0]}"));
    CHECK(!V("{\"const\": false}", "0"));
    /* maxLength counts code points, not bytes or UTF-16 units */
    CHECK(V("{\"maxLength\": 2}", "\"\\u00e9\\ud83d\\ude00\""));
    CHECK(!V("{\"maxLength\": 1}", "\"\\u00e9\\ud83d\\ude00\""));
    CHECK(V("{\"const\": \"a\\u0000b\"}", "\"a\\u0000b\""));
}

TEST(ecmascript_patterns) {
    /* search semantics, ECMAScript classes, \u escapes, `.` and line terminators */
    CHECK(V("{\"pattern\": \"b\"}", "\"abc\""));
    CHECK(!V("{\"pattern\": \"^b\"}", "\"abc\""));
    CHECK(!V("{\"pattern\": \"^a$\"}", "\"a\\n\""));
    CHECK(!V("{\"pattern\": \"^\\\\d$\"}", "\"\\u0662\"")); /* \d is ASCII */
    CHECK(V("{\"pattern\": \"^\\\\s$\"}", "\"\\u00a0\""));  /* \s is Unicode */
    CHECK(V("{\"pattern\": \"^\\\\s$\"}", "\"\\ufeff\""));
    CHECK(!V("{\"pattern\": \"^\\\\w$\"}", "\"\\u00e9\""));
    CHECK(V("{\"pattern\": \"^\\\\u00e9$\"}", "\"\\u00e9\""));
    CHECK(V("{\"pattern\": \"^\\\\ud83d\\\\ude00$\"}", "\"\\ud83d\\ude00\""));
    CHECK(V("{\"pattern\": \"^\\\\u{1F600}$\"}", "\"\\ud83d\\ude00\""));
    CHECK(V("{\"pattern\": \"^.$\"}", "\"\\ud83d\\ude00\""));
    CHECK(!V("{\"pattern\": \"^.$\"}", "\"\\u2028\""));
    CHECK(V("{\"pattern\": \"^[^]$\"}", "\"\\n\""));
    CHECK(!V("{\"pattern\": \"[]\"}", "\"a\""));
    CHECK(V("{\"pattern\": \"^(a)\\\\1$\"}", "\"aa\"")); /* backreferences work here */
    CHECK(V("{\"pattern\": \"^(?<x>a)\\\\k<x>$\"}", "\"aa\""));
    CHECK(V("{\"pattern\": \"^[\\\\d-]+$\"}", "\"1-2\""));
    CHECK(V("{\"patternProperties\": {\"^x-\": {\"type\": \"integer\"}}}", "{\"x-a\": 1}"));
    CHECK(!V("{\"patternProperties\": {\"^x-\": {\"type\": \"integer\"}}}", "{\"x-a\": \"1\"}"));
    char err[512];
    CHECK_EQ_INT(COMPILE("{\"pattern\": \"(\"}", 0, err, sizeof err), RL_ERR_INVALID_ARG);
    CHECKF(strstr(err, "#/pattern: invalid pattern"), "%s", err);
    /* what PCRE2 would read but ECMAScript rejects */
    static const char *const not_es[] = {"{\"pattern\": \"(?<*a)b\"}", "{\"pattern\": \"a++\"}",
                                         "{\"pattern\": \"(?>a)\"}", "{\"pattern\": \"(*FAIL)\"}"};
    for (size_t i = 0; i < RL_ARRAY_LEN(not_es); i++) {
        CHECK_EQ_INT(COMPILE(not_es[i], 0, err, sizeof err), RL_ERR_INVALID_ARG);
        CHECKF(strstr(err, "#/pattern: invalid pattern: regex: "), "%s", err);
    }
}

TEST(draft7_spellings) {
    const char *d7 = "{\"$schema\": \"http://json-schema.org/draft-07/schema#\", "
                     "\"definitions\": {\"s\": {\"type\": \"string\"}}, "
                     "\"properties\": {\"a\": {\"$ref\": \"#/definitions/s\", \"maxLength\": 1},"
                     " \"t\": {\"items\": [{\"type\": \"integer\"}], \"additionalItems\": false},"
                     " \"d\": {\"dependencies\": {\"x\": [\"y\"]}}}}";
    CHECK(V(d7, "{\"a\": \"abc\"}")); /* $ref ignores maxLength in draft-07 */
    CHECK(!V(d7, "{\"a\": 1}"));
    CHECK(V(d7, "{\"t\": [1]}"));
    CHECK(!V(d7, "{\"t\": [1, 2]}"));
    CHECK(!V(d7, "{\"t\": [\"x\"]}"));
    CHECK(!V(d7, "{\"d\": {\"x\": 1}}"));
    /* draft-07 "$id": "#name" anchors */
    CHECK(
        !V("{\"$schema\": \"http://json-schema.org/draft-07/schema#\", \"definitions\": "
           "{\"a\": {\"$id\": \"#foo\", \"type\": \"integer\"}}, \"items\": {\"$ref\": \"#foo\"}}",
           "[\"x\"]"));
    /* 2020-12: $ref applies with its siblings */
    CHECK(!V("{\"$defs\": {\"s\": {\"type\": \"string\"}}, \"$ref\": \"#/$defs/s\", "
             "\"maxLength\": 1}",
             "\"abc\""));
}

TEST(errors_and_limits) {
    char err[512];
    CHECK_EQ_INT(COMPILE("{", 0, err, sizeof err), RL_ERR_INVALID_ARG);
    CHECKF(strstr(err, "schema: line 1"), "%s", err);
    CHECK_EQ_INT(COMPILE("5", 0, err, sizeof err), RL_ERR_INVALID_ARG);
    CHECK_EQ_INT(COMPILE("{\"items\": 5}", 0, err, sizeof err), RL_ERR_INVALID_ARG);
    CHECKF(strstr(err, "#/items: a schema must be"), "%s", err);
    CHECK_EQ_INT(COMPILE("{\"$ref\": \"#/$defs/nope\"}", 0, err, sizeof err), RL_ERR_INVALID_ARG);
    CHECKF(strstr(err, "#/$ref: '#/$defs/nope' names nothing"), "%s", err);
    CHECK_EQ_INT(COMPILE("{\"$ref\": \"http://x.test/s.json\"}", 0, err, sizeof err),
                 RL_ERR_UNSUPPORTED);
    CHECK_EQ_INT(COMPILE("{\"$dynamicRef\": \"#x\"}", 0, err, sizeof err), RL_ERR_UNSUPPORTED);
    CHECKF(strstr(err, "#/$dynamicRef"), "%s", err);
    CHECK_EQ_INT(COMPILE("{\"$dynamicRef\": \"#x\"}", RL_SCHEMA_LENIENT, err, sizeof err), RL_OK);
    /* a $ref loop stops at the depth limit, with a message */
    rl_schema *s = NULL;
    const char *loop = "{\"$defs\": {\"a\": {\"$ref\": \"#/$defs/b\"}, \"b\": {\"$ref\": "
                       "\"#/$defs/a\"}}, \"$ref\": \"#/$defs/a\"}";
    CHECK_EQ_INT(rl_schema_compile(loop, strlen(loop), NULL, &s, err, sizeof err), RL_OK);
    bool valid = true;
    CHECK_EQ_INT(rl_schema_check(s, "1", 1, &valid, err, sizeof err), RL_ERR_LIMIT);
    CHECKF(strstr(err, "nested deeper"), "%s", err);
    CHECK_EQ_INT(rl_schema_check(s, "[", 1, &valid, err, sizeof err), RL_ERR_INVALID_ARG);
    rl_schema_free(s);
    /* deep schema nesting */
    size_t depth = 600;
    char *deep = malloc(depth * 12 + 16);
    size_t o = 0;
    for (size_t i = 0; i < depth; i++) o += (size_t)sprintf(deep + o, "{\"not\":");
    o += (size_t)sprintf(deep + o, "{}");
    for (size_t i = 0; i < depth; i++) deep[o++] = '}';
    deep[o] = 0;
    CHECK_EQ_INT(COMPILE(deep, 0, err, sizeof err), RL_ERR_LIMIT);
    free(deep);
    CHECK(rl_schema_compile(NULL, 1, NULL, &s, err, sizeof err) == RL_ERR_INVALID_ARG);
    rl_schema_free(NULL);
}

typedef struct thr_arg {
    const rl_schema *s;
    int bad;
} thr_arg;

static void *thr(void *p) {
    thr_arg *a = p;
    for (int i = 0; i < 300; i++) {
        char inst[64];
        snprintf(inst, sizeof inst, "{\"n\": %d, \"s\": \"%s\"}", i, i % 2 ? "ab" : "a1");
        bool valid;
        char err[256];
        if (rl_schema_check(a->s, inst, strlen(inst), &valid, err, sizeof err) != RL_OK ||
            valid != (i % 2 == 0 && i < 200))
            a->bad++;
    }
    return NULL;
}

TEST(threads) {
    const char *schema = "{\"properties\": {\"n\": {\"maximum\": 199}, \"s\": {\"pattern\": "
                         "\"^[a-z][0-9]$\"}}}";
    rl_schema *s = NULL;
    char err[256];
    CHECK_EQ_INT(rl_schema_compile(schema, strlen(schema), NULL, &s, err, sizeof err), RL_OK);
    pthread_t t[4];
    thr_arg a[4] = {{s, 0}, {s, 0}, {s, 0}, {s, 0}};
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, thr, &a[i]);
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        CHECK_EQ_INT(a[i].bad, 0);
    }
    rl_schema_free(s);
}

TEST(allocation_failures) {
    const char *schema =
        "{\"$id\": \"http://example.com/root.json\", \"$defs\": {\"n\": {\"$anchor\": \"node\", "
        "\"type\": \"object\", \"properties\": {\"v\": {\"pattern\": \"^[a-z]+$\"}, \"kids\": "
        "{\"type\": \"array\", \"items\": {\"$ref\": \"#node\"}}}}}, \"$ref\": \"#/$defs/n\"}";
    const char *inst = "{\"v\": \"ab\", \"kids\": [{\"v\": \"c\"}, {\"v\": \"D\"}]}";
    size_t base = rl_mem_in_use();
    int nomem = 0, ok = 0;
    for (long k = 1; k < 2000; k++) {
        rl__alloc_fail_after(k);
        rl_schema *s = NULL;
        char err[256];
        rl_status st = rl_schema_compile(schema, strlen(schema), NULL, &s, err, sizeof err);
        bool valid = true;
        if (st == RL_OK) st = rl_schema_check(s, inst, strlen(inst), &valid, err, sizeof err);
        rl__alloc_fail_after(0);
        rl_schema_free(s);
        CHECKF(st == RL_OK || st == RL_ERR_NOMEM, "k=%ld: %s: %s", k, rl_status_str(st), err);
        CHECKF(rl_mem_in_use() == base, "k=%ld leaks", k);
        if (st == RL_OK) {
            CHECK(!valid);
            ok++;
            break;
        }
        nomem++;
    }
    CHECK(nomem > 20 && ok == 1);
}

int main(void) {
    RUN(suite_draft2020_12);
    RUN(messages);
    RUN(keywords_beyond_the_suite_list);
    RUN(ecmascript_patterns);
    RUN(draft7_spellings);
    RUN(errors_and_limits);
    RUN(threads);
    RUN(allocation_failures);
    return rl_test_finish();
}
