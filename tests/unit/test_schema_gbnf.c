/* Tests of JSON Schema -> GBNF (rl_schema_to_gbnf, rl_schema_gbnf) and JSON mode
 * (rl_json_object_gbnf), with the grammar engine of the grammar section as the judge:
 *  - table-driven cases: the rules a schema gives (shapes as llama.cpp's converter writes
 *    them) and texts the grammar must accept or reject;
 *  - integer and number ranges against every value of a window;
 *  - what cannot be expressed is an error naming keyword and place (or a warning in
 *    lenient mode), limits end in RL_ERR_LIMIT;
 *  - the JSON-Schema-Test-Suite (draft2020-12, the listed keywords): for each schema that
 *    converts, every valid instance (compact, in some key order) is accepted and every
 *    invalid one rejected in every key order; and random texts of each grammar validate;
 *  - bench_schema.json converts, and its random texts validate;
 *  - integer and decimal bounds; conversions in four threads at once; allocation failures. */
#include "gbnf_check.h"
#include "test.h"

#include "ruvllm.h"
#include "schema/schema_impl.h"
#include "util/util.h"

#include <jansson.h>
#include <pthread.h>

static char g_err[1024];

static char *to_gbnf(const char *schema, uint32_t flags, rl_status *st) {
    char *out = NULL;
    *st = rl_schema_to_gbnf(schema, strlen(schema), flags, &out, g_err, sizeof g_err);
    return out;
}

/* ---- table-driven cases ---------------------------------------------------------------- */

typedef struct gcase {
    const char *schema;
    uint32_t flags;
    const char *has[4];    /* lines (or parts of lines) the grammar contains */
    const char *accept[6]; /* texts the grammar accepts */
    const char *reject[6]; /* texts it rejects */
} gcase;

static const gcase CASES[] = {
    {"{\"type\": \"string\"}",
     0,
     {"root ::= string\n", "string ::= \"\\\"\" char* \"\\\"\"\n"},
     {"\"\"", "\"a\\\"b\"", "\"\\u00e9\\ud83d\\ude00\"", "\"caf\xc3\xa9\""},
     {"\"a", "\"\\ud800\"", "\"\\x\"", "\"tab\there\"", "5"}},
    {"{\"type\": \"integer\", \"minimum\": 0, \"maximum\": 150}",
     0,
     {"root ::= ([0-9] | [1-9] [0-9] | \"1\" ([0-4] [0-9] | \"50\"))\n"},
     {"0", "9", "10", "99", "150", "149"},
     {"151", "-1", "01", "1.0", "200", "1000"}},
    {"{\"type\": \"integer\", \"exclusiveMinimum\": -5, \"exclusiveMaximum\": 3}",
     0,
     {0},
     {"-4", "0", "2", "-1"},
     {"-5", "3", "-0", "-10"}},
    {"{\"type\": \"number\", \"minimum\": 0, \"exclusiveMaximum\": 1}",
     0,
     {0},
     {"0", "0.5", "0.999", "0.0"},
     {"1", "1.0", "-0.1", "-0", "1e-5", "2"}},
    {"{\"type\": \"number\", \"exclusiveMinimum\": 0}",
     0,
     {0},
     {"0.001", "1", "12345.5", "7.0"},
     {"0", "0.000", "-1", "-0.5", "1e3"}},
    {"{\"type\": \"number\", \"minimum\": -2, \"maximum\": -1}",
     0,
     {0},
     {"-1", "-1.5", "-2", "-2.0", "-1.000"},
     {"-2.5", "-0.5", "0", "-2.01", "1"}},
    {"{\"enum\": [\"a\", 1, null, {\"k\": [true]}]}",
     0,
     {"root ::= \"\\\"a\\\"\" | \"1\" | \"null\" | \"{\\\"k\\\":[true]}\"\n"},
     {"\"a\"", "1", "null", "{\"k\":[true]}"},
     {"\"b\"", "2", "true"}},
    {"{\"const\": \"x\\ny\"}", 0, {"root ::= \"\\\"x\\\\ny\\\"\"\n"}, {"\"x\\ny\""}, {"\"xy\""}},
    /* property order: required first (declared order), then optional; no extras by
     * default */
    {"{\"properties\": {\"a\": {\"type\": \"integer\"}, \"b\": {\"type\": \"string\"}, "
     "\"c\": {\"type\": \"boolean\"}}, \"required\": [\"b\"]}",
     0,
     {"root ::= \"{\" space b-kv ( \",\" space ( a-kv c-rest | c-kv ) )? space \"}\"\n",
      "c-rest ::= ( \",\" space c-kv )?\n", "space ::= | \" \" | \"\\n\"{1,2} [ \\t]{0,20}\n"},
     {"{\"b\":\"x\"}", "{\"b\":\"x\",\"a\":1,\"c\":true}", "{ \"b\" : \"x\",\n  \"c\": false\n}",
      "{\"b\":\"\",\"a\":-3}"},
     {"{}", "{\"a\":1}", "{\"b\":\"x\",\"d\":1}", "{\"a\":1,\"b\":\"x\"}",
      "{\"b\":\"x\",\"c\":true,\"a\":1}", "{\"b\":\"x\"}   "}},
    /* the same with extras allowed (the specification's default) */
    {"{\"properties\": {\"a\": {\"type\": \"integer\"}}}",
     RL_SCHEMA_EXTRA_PROPERTIES,
     {0},
     {"{}", "{\"a\":1}", "{\"a\":1,\"b\":[1,{}]}", "{\"ab\":\"x\"}", "{\"\":null}"},
     {"{\"a\":\"x\"}", "{\"b\":1,\"a\":\"x\"}", "{\"b\":1,\"a\":1}"}},
    {"{\"type\": \"object\", \"additionalProperties\": false}",
     0,
     {"root ::= \"{\" space \"}\"\n"},
     {"{}", "{ }"},
     {"{\"a\":1}"}},
    {"{\"type\": \"object\", \"properties\": {}}",
     0,
     {"root ::= \"{\" space \"}\"\n"},
     {"{}"},
     {"{\"a\":1}"}},
    {"{\"type\": \"object\"}",
     0,
     {"root ::= object\n"},
     {"{}", "{\"a\":[1,2,{\"b\":null}]}"},
     {"[]", "{\"a\"}"}},
    {"{\"type\": \"array\", \"items\": {\"type\": \"integer\"}, \"minItems\": 2, \"maxItems\": 3}",
     0,
     {"root ::= \"[\" space integer ( \",\" space integer ){1,2} space \"]\"\n"},
     {"[1,2]", "[1, 2, 3]"},
     {"[]", "[1]", "[1,2,3,4]", "[1,\"a\"]"}},
    {"{\"prefixItems\": [{\"type\": \"string\"}, {\"type\": \"integer\"}], \"items\": false}",
     0,
     {0},
     {"[]", "[\"a\"]", "[\"a\",1]"},
     {"[1]", "[\"a\",1,2]", "[\"a\",\"b\"]"}},
    {"{\"prefixItems\": [{\"const\": 1}], \"items\": {\"type\": \"string\"}, \"minItems\": 2}",
     0,
     {0},
     {"[1,\"a\"]", "[1,\"a\",\"b\"]"},
     {"[1]", "[]", "[1,2]"}},
    {"{\"type\": \"string\", \"minLength\": 2, \"maxLength\": 3}",
     0,
     {"root ::= \"\\\"\" char{2,3} \"\\\"\"\n"},
     {"\"ab\"", "\"\\n\\u00e9x\""},
     {"\"a\"", "\"abcd\""}},
    {"{\"type\": \"string\", \"pattern\": \"^[a-z]+-[0-9]{2}$\"}",
     0,
     {"root ::= \"\\\"\" [a-z]+ \"-\" [0-9]{2} \"\\\"\"\n"},
     {"\"ab-12\""},
     {"\"ab-1\"", "\"-12\""}},
    /* pattern search semantics, and JSON escapes of what the pattern matches */
    {"{\"type\": \"string\", \"pattern\": \"a\\\"b\"}",
     0,
     {0},
     {"\"xa\\\"by\"", "\"a\\\"b\""},
     {"\"ab\"", "\"a\\u0022b\""}},
    {"{\"type\": \"string\", \"pattern\": \"^\\\\s$\"}",
     0,
     {0},
     {"\" \"", "\"\\t\"", "\"\\n\"", "\"\\u000b\""},
     {"\"a\"", "\"\\u0020\""}},
    /* a pattern narrowed by maxLength */
    {"{\"type\": \"string\", \"pattern\": \"^[A-Z][a-z]*$\", \"maxLength\": 4}",
     0,
     {"root ::= \"\\\"\" [A-Z] [a-z]{0,3} \"\\\"\"\n"},
     {"\"Abcd\"", "\"A\""},
     {"\"Abcde\""}},
    {"{\"type\": \"string\", \"format\": \"date\"}",
     0,
     {0},
     {"\"2024-02-29\"", "\"1999-12-31\""},
     {"\"2024-02-30\"", "\"2024-04-31\"", "\"24-01-01\""}},
    {"{\"type\": \"string\", \"format\": \"date-time\"}",
     0,
     {0},
     {"\"2024-02-29T23:59:59Z\"", "\"2024-01-01t00:00:00.123+05:30\""},
     {"\"2024-01-01T24:00:00Z\"", "\"2024-01-01T00:00:00\""}},
    {"{\"type\": \"string\", \"format\": \"uuid\"}",
     0,
     {0},
     {"\"123e4567-e89b-12d3-a456-426614174000\""},
     {"\"123e4567e89b12d3a456426614174000\""}},
    {"{\"format\": \"email\"}",
     0,
     {0},
     {"\"a.b+c@x-y.example\""},
     {"\"a@b\"", "\"@b.c\"", "\"a@-b.c\""}},
    {"{\"type\": \"string\", \"format\": \"ipv4\"}",
     0,
     {0},
     {"\"192.168.0.255\""},
     {"\"256.1.1.1\"", "\"1.2.3\""}},
    {"{\"type\": \"string\", \"format\": \"uri\"}",
     0,
     {0},
     {"\"https://example.com/a?b=c#d\"", "\"urn:isbn:0451450523\"", "\"mailto:a@b.c\""},
     {"\"no scheme\"", "\"://x\"", "\"http://a b\""}},
    {"{\"type\": [\"string\", \"null\"]}",
     0,
     {"root ::= string | null\n"},
     {"null", "\"x\""},
     {"1"}},
    {"{\"anyOf\": [{\"type\": \"boolean\"}, {\"type\": \"integer\", \"maximum\": 0}]}",
     0,
     {0},
     {"true", "-5", "0"},
     {"1", "null"}},
    /* allOf of objects merged; additionalProperties false counts only its own properties */
    {"{\"allOf\": [{\"properties\": {\"a\": {\"type\": \"integer\"}}, \"required\": [\"a\"]}, "
     "{\"properties\": {\"a\": {\"minimum\": 5}, \"b\": {\"type\": \"string\"}}}]}",
     0,
     {0},
     {"{\"a\":5}", "{\"a\":7,\"b\":\"x\"}"},
     {"{\"a\":4}", "{\"b\":\"x\"}", "{\"a\":5.5}"}},
    {"{\"allOf\": [{\"properties\": {\"a\": {}}, \"additionalProperties\": false}, "
     "{\"properties\": {\"b\": {}}}]}",
     0,
     {0},
     {"{}", "{\"a\":1}"},
     {"{\"b\":1}"}},
    /* a pattern with alternatives names the properties */
    {"{\"patternProperties\": {\"^x|y$\": {\"type\": \"boolean\"}}}",
     0,
     {0},
     {"{}", "{\"xa\":true,\"by\":false}"},
     {"{\"a\":true}", "{\"x\":1}"}},
    /* required properties that no "properties" declares */
    {"{\"type\": \"object\", \"required\": [\"id\"]}", 0, {0}, {"{\"id\":[1]}"}, {"{}"}},
    /* recursion */
    {"{\"$defs\": {\"t\": {\"type\": \"object\", \"properties\": {\"k\": {\"type\": \"array\", "
     "\"items\": {\"$ref\": \"#/$defs/t\"}}}}}, \"$ref\": \"#/$defs/t\"}",
     0,
     {"root ::= \"{\" space ( ( k-kv ) space )? \"}\"\n"},
     {"{}", "{\"k\":[{},{\"k\":[{\"k\":[]}]}]}"},
     {"{\"k\":[1]}"}},
    /* oneOf with disjoint alternatives */
    {"{\"oneOf\": [{\"type\": \"string\"}, {\"type\": \"array\"}]}",
     0,
     {0},
     {"\"a\"", "[]"},
     {"1"}},
    {"{\"oneOf\": [{\"type\": \"integer\", \"maximum\": 0}, {\"type\": \"integer\", "
     "\"minimum\": 1}]}",
     0,
     {0},
     {"0", "1", "-3"},
     {"0.5"}},
    /* draft-07: definitions, items array, additionalItems */
    {"{\"$schema\": \"http://json-schema.org/draft-07/schema#\", \"definitions\": {\"n\": "
     "{\"type\": \"number\"}}, \"type\": \"array\", \"items\": [{\"$ref\": \"#/definitions/n\"}], "
     "\"additionalItems\": {\"type\": \"string\"}}",
     0,
     {0},
     {"[1.5]", "[1,\"a\",\"b\"]", "[]"},
     {"[\"a\"]", "[1,2]"}},
    /* compact: no whitespace at all */
    {"{\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"array\"}}, \"required\": "
     "[\"a\"]}",
     RL_SCHEMA_COMPACT,
     {"root ::= \"{\" a-kv \"}\"\n"},
     {"{\"a\":[]}", "{\"a\":[1,{\"b\":2}]}"},
     {"{ \"a\":[]}", "{\"a\": []}", "{\"a\":[1, 2]}"}},
    /* type inference off: a schema without type allows every type */
    {"{\"minLength\": 2}",
     RL_SCHEMA_NO_TYPE_INFERENCE,
     {0},
     {"\"ab\"", "1", "null", "[]"},
     {"\"a\""}},
    {"{\"minLength\": 2}", 0, {0}, {"\"ab\""}, {"1", "\"a\""}},
    {"{\"multipleOf\": 1}", 0, {0}, {"5", "-5"}, {"5.5"}},
    {"true", 0, {"root ::= value\n"}, {"1", "{\"a\":[]}"}, {"nul"}},
};

TEST(cases) {
    for (size_t i = 0; i < RL_ARRAY_LEN(CASES); i++) {
        const gcase *k = &CASES[i];
        rl_status st;
        char *text = to_gbnf(k->schema, k->flags, &st);
        CHECKF(st == RL_OK, "%s: %s", k->schema, g_err);
        if (!text) continue;
        for (int j = 0; j < 4 && k->has[j]; j++)
            CHECKF(strstr(text, k->has[j]), "%s: missing\n  %s\nin\n%s", k->schema, k->has[j],
                   text);
        if (k->flags & RL_SCHEMA_COMPACT) CHECKF(!strstr(text, "space"), "%s", text);
        rl_test_gbnf_expect(k->schema, text, k->accept, 6, k->reject, 6);
        rl_free_string(text);
    }
}

/* ---- ranges against every value of a window ------------------------------------------ */

TEST(integer_ranges) {
    static const long long bounds[][2] = {{0, 0},      {-1, 1},     {3, 17},    {-250, -7},
                                          {-99, 1000}, {10, 99},    {100, 100}, {-1000, -1000},
                                          {7, 2345},   {-2345, 12}, {1, 1999},  {999, 1001}};
    for (size_t b = 0; b < RL_ARRAY_LEN(bounds); b++) {
        char schema[128];
        snprintf(schema, sizeof schema,
                 "{\"type\": \"integer\", \"minimum\": %lld, \"maximum\": %lld}", bounds[b][0],
                 bounds[b][1]);
        rl_status st;
        char *text = to_gbnf(schema, 0, &st);
        CHECKF(st == RL_OK, "%s", g_err);
        rl_grammar *g = text ? rl_test_compile_gbnf(text) : NULL;
        int bad = 0;
        for (long long v = -2600; g && v <= 2600; v++) {
            char num[32];
            snprintf(num, sizeof num, "%lld", v);
            bool want = v >= bounds[b][0] && v <= bounds[b][1];
            if (rl_test_gbnf_accepts(g, num, strlen(num)) != want && bad++ < 3)
                CHECKF(false, "%s: %lld %s", schema, v, want ? "rejected" : "accepted");
        }
        CHECK_EQ_INT(bad, 0);
        rl_grammar_free(g);
        rl_free_string(text);
    }
    /* one-sided and the 64-bit ends */
    rl_status st;
    char *text = to_gbnf("{\"type\": \"integer\", \"minimum\": -9223372036854775807, "
                         "\"maximum\": 9223372036854775807}",
                         0, &st);
    CHECK(st == RL_OK);
    rl_grammar *g = text ? rl_test_compile_gbnf(text) : NULL;
    if (g) {
        CHECK(rl_test_gbnf_accepts(g, "9223372036854775807", 19));
        CHECK(!rl_test_gbnf_accepts(g, "9223372036854775808", 19));
        CHECK(rl_test_gbnf_accepts(g, "-9223372036854775807", 20));
        CHECK(rl_test_gbnf_accepts(g, "0", 1));
    }
    rl_grammar_free(g);
    rl_free_string(text);
    text = to_gbnf("{\"type\": \"integer\", \"minimum\": 5}", 0, &st);
    g = text ? rl_test_compile_gbnf(text) : NULL;
    if (g) {
        CHECK(rl_test_gbnf_accepts(g, "5", 1) && rl_test_gbnf_accepts(g, "1234567890123456", 16));
        CHECK(!rl_test_gbnf_accepts(g, "4", 1) && !rl_test_gbnf_accepts(g, "-5", 2) &&
              !rl_test_gbnf_accepts(g, "05", 2));
    }
    rl_grammar_free(g);
    rl_free_string(text);
}

/* Decimal bounds against every value of a window with up to three fraction digits (values
 * in thousandths, compared exactly). */
TEST(decimal_ranges) {
    static const struct {
        const char *lo, *hi;
        bool lx, hx;
    } B[] = {{"-1.5", "2.25", false, false}, {"-1.5", "2.25", true, true},
             {"0.1", "0.3", false, true},    {"-0.125", NULL, true, false},
             {NULL, "-0.75", false, false},  {"1.001", "1.002", false, false},
             {"-2.5", "-2.5", false, false}, {"0.5", "1", true, false}};
    for (size_t b = 0; b < RL_ARRAY_LEN(B); b++) {
        char schema[256];
        int o = snprintf(schema, sizeof schema, "{\"type\": \"number\"");
        if (B[b].lo)
            o += snprintf(schema + o, sizeof schema - (size_t)o, ", \"%s\": %s",
                          B[b].lx ? "exclusiveMinimum" : "minimum", B[b].lo);
        if (B[b].hi)
            o += snprintf(schema + o, sizeof schema - (size_t)o, ", \"%s\": %s",
                          B[b].hx ? "exclusiveMaximum" : "maximum", B[b].hi);
        snprintf(schema + o, sizeof schema - (size_t)o, "}");
        long lo = B[b].lo ? lround(atof(B[b].lo) * 1000) : 0;
        long hi = B[b].hi ? lround(atof(B[b].hi) * 1000) : 0;
        rl_status st;
        char *text = to_gbnf(schema, 0, &st);
        CHECKF(st == RL_OK, "%s: %s", schema, g_err);
        rl_grammar *g = text ? rl_test_compile_gbnf(text) : NULL;
        int bad = 0;
        for (long v = -3000; g && v <= 3000; v++) {
            bool want = (!B[b].lo || (B[b].lx ? v > lo : v >= lo)) &&
                        (!B[b].hi || (B[b].hx ? v < hi : v <= hi));
            char num[32];
            snprintf(num, sizeof num, "%s%ld.%03ld", v < 0 ? "-" : "", labs(v) / 1000,
                     labs(v) % 1000);
            if (!strcmp(num, "-0.000")) continue;
            if (rl_test_gbnf_accepts(g, num, strlen(num)) != want && bad++ < 3)
                CHECKF(false, "%s: %s %s", schema, num, want ? "rejected" : "accepted");
            /* the same value without trailing zeros */
            size_t n = strlen(num);
            while (num[n - 1] == '0') num[--n] = 0;
            if (num[n - 1] == '.') num[--n] = 0;
            if (!strcmp(num, "-0")) continue;
            if (rl_test_gbnf_accepts(g, num, n) != want && bad++ < 3)
                CHECKF(false, "%s: %s %s", schema, num, want ? "rejected" : "accepted");
        }
        CHECK_EQ_INT(bad, 0);
        rl_grammar_free(g);
        rl_free_string(text);
    }
    /* a bound that needs 16 or more significant digits is refused */
    rl_status st;
    char *text = to_gbnf("{\"type\": \"number\", \"minimum\": 0.1234567890123456}", 0, &st);
    CHECKF(st == RL_ERR_UNSUPPORTED && strstr(g_err, "#/minimum: "), "%s", g_err);
    rl_free_string(text);
}

TEST(number_ranges) {
    /* decimals with up to two fraction digits in [-30, 30] against integer bounds */
    static const struct {
        int lo, hi;
        bool lx, hx, has_lo, has_hi;
    } B[] = {{0, 1, false, true, true, true},     {-3, 7, true, false, true, true},
             {-20, -4, false, false, true, true}, {0, 0, false, false, true, true},
             {2, 0, true, false, true, false},    {0, 5, false, true, false, true},
             {-1, 1, true, true, true, true}};
    for (size_t b = 0; b < RL_ARRAY_LEN(B); b++) {
        char schema[256];
        int o = snprintf(schema, sizeof schema, "{\"type\": \"number\"");
        if (B[b].has_lo)
            o += snprintf(schema + o, sizeof schema - (size_t)o, ", \"%s\": %d",
                          B[b].lx ? "exclusiveMinimum" : "minimum", B[b].lo);
        if (B[b].has_hi)
            o += snprintf(schema + o, sizeof schema - (size_t)o, ", \"%s\": %d",
                          B[b].hx ? "exclusiveMaximum" : "maximum", B[b].hi);
        snprintf(schema + o, sizeof schema - (size_t)o, "}");
        rl_status st;
        char *text = to_gbnf(schema, 0, &st);
        CHECKF(st == RL_OK, "%s", g_err);
        rl_grammar *g = text ? rl_test_compile_gbnf(text) : NULL;
        int bad = 0;
        for (int v = -3000; g && v <= 3000; v++) {
            double x = v / 100.0;
            bool want = (!B[b].has_lo || (B[b].lx ? x > B[b].lo : x >= B[b].lo)) &&
                        (!B[b].has_hi || (B[b].hx ? x < B[b].hi : x <= B[b].hi));
            char forms[3][32];
            snprintf(forms[0], 32, "%.2f", x);
            snprintf(forms[1], 32, "%.1f", x);
            snprintf(forms[2], 32, "%d", v / 100);
            for (int f = 0; f < 3; f++) {
                if (f == 1 && v % 10) continue;
                if (f == 2 && v % 100) continue;
                if (!strcmp(forms[f], "-0.00") || !strcmp(forms[f], "-0.0") ||
                    !strcmp(forms[f], "-0"))
                    continue; /* "-0" is not written by the grammar; its value is 0 */
                if (rl_test_gbnf_accepts(g, forms[f], strlen(forms[f])) != want && bad++ < 3)
                    CHECKF(false, "%s: %s %s", schema, forms[f], want ? "rejected" : "accepted");
            }
        }
        CHECK_EQ_INT(bad, 0);
        rl_grammar_free(g);
        rl_free_string(text);
    }
}

/* ---- what cannot be expressed ------------------------------------------------------------ */

typedef struct ecase {
    const char *schema;
    rl_status st;
    const char *msg;
} ecase;

static const ecase ERRORS[] = {
    {"{\"type\": \"integer\", \"multipleOf\": 3}", RL_ERR_UNSUPPORTED, "#/multipleOf: "},
    {"{\"properties\": {\"a\": {\"type\": \"array\", \"uniqueItems\": true}}}", RL_ERR_UNSUPPORTED,
     "#/properties/a/uniqueItems: "},
    {"{\"not\": {\"type\": \"null\"}}", RL_ERR_UNSUPPORTED, "#/not: "},
    {"{\"if\": {\"type\": \"string\"}, \"then\": {\"minLength\": 1}}", RL_ERR_UNSUPPORTED,
     "#/if: "},
    {"{\"items\": {\"contains\": {\"type\": \"null\"}}}", RL_ERR_UNSUPPORTED, "#/items/contains: "},
    {"{\"dependentRequired\": {\"a\": [\"b\"]}}", RL_ERR_UNSUPPORTED, "#/dependentRequired: "},
    {"{\"patternProperties\": {\"^x\": {}}, \"additionalProperties\": true}", RL_ERR_UNSUPPORTED,
     "#/patternProperties: "},
    {"{\"type\": \"string\", \"format\": \"iri-reference\"}", RL_ERR_UNSUPPORTED, "#/format: "},
    {"{\"type\": \"string\", \"pattern\": \"(a)\\\\1\"}", RL_ERR_UNSUPPORTED,
     "#/pattern: regex: backreferences are not supported (at offset 3)"},
    {"{\"type\": \"string\", \"pattern\": \"^a(?=b)\"}", RL_ERR_UNSUPPORTED, "lookahead"},
    {"{\"type\": \"string\", \"pattern\": \"a+\", \"maxLength\": 3}", RL_ERR_UNSUPPORTED,
     "#/pattern: together with minLength/maxLength"},
    {"{\"oneOf\": [{\"type\": \"string\"}, {\"maxLength\": 3}]}", RL_ERR_UNSUPPORTED,
     "#/oneOf: alternatives 0 and 1 may both match"},
    {"{\"$defs\": {\"a\": {\"oneOf\": [{}, {\"type\": \"null\"}]}}, \"items\": {\"$ref\": "
     "\"#/$defs/a\"}}",
     RL_ERR_UNSUPPORTED, "#/$defs/a/oneOf: "},
    {"{\"$ref\": \"http://example.com/s.json\"}", RL_ERR_UNSUPPORTED, "no resolver"},
    {"{\"$ref\": \"#/$defs/missing\"}", RL_ERR_INVALID_ARG, "names nothing"},
    {"{\"type\": \"string\", \"minLength\": 5, \"maxLength\": 2}", RL_ERR_INVALID_ARG,
     "no value satisfies the schema"},
    {"{\"allOf\": [{\"type\": \"string\"}, {\"type\": \"integer\"}]}", RL_ERR_INVALID_ARG,
     "no value satisfies"},
    {"{\"required\": [\"a\"], \"properties\": {\"a\": false}}", RL_ERR_INVALID_ARG, "no value"},
    {"{\"$defs\": {\"a\": {\"$ref\": \"#/$defs/b\"}, \"b\": {\"$ref\": \"#/$defs/a\"}}, "
     "\"$ref\": \"#/$defs/a\"}",
     RL_ERR_INVALID_ARG, "circle"},
    {"{\"type\": \"string\", \"maxLength\": 5000}", RL_ERR_LIMIT, "repetition of 5000"},
    {"{\"type\": \"array\", \"minItems\": 3000}", RL_ERR_LIMIT, "exceeds the limit of 2000"},
    {"{", RL_ERR_INVALID_ARG, "schema: line 1"},
};

TEST(unsupported_and_errors) {
    for (size_t i = 0; i < RL_ARRAY_LEN(ERRORS); i++) {
        rl_status st;
        char *text = to_gbnf(ERRORS[i].schema, 0, &st);
        CHECKF(st == ERRORS[i].st && !text, "%s: %s (%s)", ERRORS[i].schema, rl_status_str(st),
               g_err);
        CHECKF(strstr(g_err, ERRORS[i].msg), "%s: message \"%s\" lacks \"%s\"", ERRORS[i].schema,
               g_err, ERRORS[i].msg);
        rl_free_string(text);
        if (ERRORS[i].st != RL_ERR_UNSUPPORTED || strstr(ERRORS[i].msg, "resolver")) continue;
        /* lenient: a grammar, with the dropped constraint listed as a warning */
        text = to_gbnf(ERRORS[i].schema, RL_SCHEMA_LENIENT, &st);
        CHECKF(st == RL_OK, "%s lenient: %s", ERRORS[i].schema, g_err);
        if (!text) continue;
        CHECKF(!strncmp(text, "# warning: ", 11), "%s", text);
        rl_grammar *g = rl_test_compile_gbnf(text);
        rl_grammar_free(g);
        rl_free_string(text);
    }
    /* arguments */
    char *out = (char *)1;
    CHECK_EQ_INT(rl_schema_to_gbnf("{}", 2, 1u << 20, &out, g_err, sizeof g_err),
                 RL_ERR_INVALID_ARG);
    CHECK(out == NULL);
    CHECK_EQ_INT(rl_schema_to_gbnf(NULL, 3, 0, &out, g_err, sizeof g_err), RL_ERR_INVALID_ARG);
    CHECK_EQ_INT(rl_schema_gbnf(NULL, 0, &out, g_err, sizeof g_err), RL_ERR_INVALID_ARG);
}

TEST(limits) {
    rl_status st;
    /* anyOf combinations: 2^12 alternatives from 12 anyOfs in an allOf */
    char schema[4096];
    int o = snprintf(schema, sizeof schema, "{\"allOf\": [");
    for (int i = 0; i < 12; i++)
        o += snprintf(schema + o, sizeof schema - (size_t)o,
                      "%s{\"anyOf\": [{\"minLength\": %d}, {\"maxLength\": %d}]}", i ? "," : "", i,
                      100 + i);
    snprintf(schema + o, sizeof schema - (size_t)o, "]}");
    char *text = to_gbnf(schema, 0, &st);
    CHECKF(st == RL_ERR_LIMIT && strstr(g_err, "alternatives"), "%s", g_err);
    rl_free_string(text);
    /* deep nesting */
    size_t depth = 700;
    char *deep = malloc(depth * 20 + 16);
    size_t n = 0;
    for (size_t i = 0; i < depth; i++) n += (size_t)sprintf(deep + n, "{\"items\":");
    n += (size_t)sprintf(deep + n, "{}");
    for (size_t i = 0; i < depth; i++) deep[n++] = '}';
    deep[n] = 0;
    text = to_gbnf(deep, 0, &st);
    CHECKF(st == RL_ERR_LIMIT, "%s", g_err);
    rl_free_string(text);
    free(deep);
    /* the repetition budget across a grammar: 150 properties of maxLength 2000 */
    rl__sstr s = {0};
    rl__sstr_puts(&s, "{\"properties\": {");
    for (int i = 0; i < 150; i++)
        rl__sstr_printf(&s, "%s\"p%d\": {\"type\": \"string\", \"maxLength\": %d}", i ? "," : "", i,
                        2000 - i);
    rl__sstr_puts(&s, "}}");
    text = to_gbnf(s.p, 0, &st);
    CHECKF(st == RL_ERR_LIMIT && strstr(g_err, "200000"), "%s", g_err);
    rl_free_string(text);
    rl__sstr_free(&s);
    /* big counts inside groups that are themselves optional or repeated still compile (the
     * engine refuses a quantified group that would make 2000 rules) */
    static const char *const big[] = {
        "{\"type\": \"array\", \"maxItems\": 2000}",
        "{\"type\": \"array\", \"items\": {\"type\": \"string\", \"maxLength\": 1500}, "
        "\"prefixItems\": [{}, {}], \"maxItems\": 1999}",
        "{\"type\": \"string\", \"pattern\": \"^(a{0,1500}b{0,1500})*$\"}",
        "{\"type\": \"string\", \"pattern\": \"(x{2,800}y|z)+\"}"};
    for (size_t i = 0; i < RL_ARRAY_LEN(big); i++) {
        text = to_gbnf(big[i], 0, &st);
        CHECKF(st == RL_OK, "%s: %s", big[i], g_err);
        rl_grammar *g = text ? rl_test_compile_gbnf(text) : NULL;
        if (g && i == 0) {
            CHECK(rl_test_gbnf_accepts(g, "[]", 2) && rl_test_gbnf_accepts(g, "[1,2]", 5));
        }
        rl_grammar_free(g);
        rl_free_string(text);
    }
    /* additional keys must differ from declared names, even very long ones */
    for (int len = 300; len <= 100000; len *= 333) {
        rl__sstr sc = {0};
        rl__sstr_puts(&sc, "{\"properties\": {\"");
        for (int i = 0; i < len; i++) rl__sstr_putc(&sc, 'k');
        rl__sstr_puts(
            &sc, "\": {\"type\": \"null\"}}, \"additionalProperties\": {\"type\": \"integer\"}}");
        text = to_gbnf(sc.p, 0, &st);
        CHECKF(st == RL_OK, "long name: %s", g_err);
        rl_grammar *g = text && len < 1000 ? rl_test_compile_gbnf(text) : NULL;
        if (g) {
            rl__sstr inst = {0};
            rl__sstr_puts(&inst, "{\"");
            for (int i = 0; i < len; i++) rl__sstr_putc(&inst, 'k');
            rl__sstr_puts(&inst, "\":1}");
            CHECK(!rl_test_gbnf_accepts(g, inst.p,
                                        inst.len)); /* the declared name with a wrong value */
            CHECK(rl_test_gbnf_accepts(g, "{\"kk\":1}", 8));
            rl__sstr_free(&inst);
        }
        rl_grammar_free(g);
        rl_free_string(text);
        rl__sstr_free(&sc);
    }
    /* many positional items */
    rl__sstr pi = {0};
    rl__sstr_puts(&pi, "{\"prefixItems\": [");
    for (int i = 0; i < 100000; i++) rl__sstr_puts(&pi, i ? ",{}" : "{}");
    rl__sstr_puts(&pi, "]}");
    text = to_gbnf(pi.p, 0, &st);
    CHECKF(st == RL_ERR_LIMIT && strstr(g_err, "more than 256 positional items"), "%s", g_err);
    rl_free_string(text);
    rl__sstr_free(&pi);
    /* a hostile pattern */
    text =
        to_gbnf("{\"type\": \"string\", \"pattern\": \"^((((((a{100}){100}){100})))))$\"}", 0, &st);
    CHECKF(st == RL_ERR_INVALID_ARG || st == RL_ERR_LIMIT, "%s", g_err);
    rl_free_string(text);
    text = to_gbnf("{\"type\": \"string\", \"pattern\": \"^(((a{100}){100}){100})$\"}", 0, &st);
    CHECKF(st == RL_OK || st == RL_ERR_LIMIT || st == RL_ERR_INVALID_ARG, "%s", g_err);
    rl_free_string(text);
}

/* ---- JSON mode ---------------------------------------------------------------------------- */

TEST(json_mode) {
    const char *j = rl_json_object_gbnf();
    rl_status st;
    char *text = to_gbnf("{\"type\": \"object\"}", 0, &st);
    CHECK(st == RL_OK && text);
    if (text) CHECKF(!strcmp(j, text), "rl_json_object_gbnf:\n%s\nconverter:\n%s", j, text);
    rl_free_string(text);
    rl_grammar *g = rl_test_compile_gbnf(j);
    if (!g) return;
    static const char *const yes[] = {"{}", "{\"a\":1}",
                                      "{ \"a\" : [1, 2.5e-3, \"x\", null, true] }",
                                      "{\"n\":{\"m\":{}}}", "{\"\\u00e9\\ud83d\\ude00\":\"\\\\\"}"};
    static const char *const no[] = {"[]",    "1",          "\"x\"",      "{\"a\":}",
                                     "{a:1}", "{\"a\":1,}", "{\"a\":01}", "{\"a\":\"\\ud800\"}"};
    for (size_t i = 0; i < RL_ARRAY_LEN(yes); i++)
        CHECKF(rl_test_gbnf_accepts(g, yes[i], strlen(yes[i])), "%s", yes[i]);
    for (size_t i = 0; i < RL_ARRAY_LEN(no); i++)
        CHECKF(!rl_test_gbnf_accepts(g, no[i], strlen(no[i])), "%s", no[i]);
    rl_grammar_free(g);
}

/* ---- random texts of a grammar validate against its schema ---------------------------- */

/* Sample n texts of grammar text (compiled) and check each against schema s. Returns the
 * number checked. */
static int sample_validate(const char *what, const char *gbnf, const rl_schema *s, int n,
                           size_t max_len) {
    rl_grammar *g = rl_test_compile_gbnf(gbnf);
    if (!g) return 0;
    char *buf = malloc(1 << 16);
    int checked = 0;
    for (int i = 0; i < n; i++) {
        size_t len = 0;
        rl_status st =
            rl_grammar_sample_text(g, (uint64_t)i * 7919 + 1, max_len, buf, 1 << 16, &len);
        if (st != RL_OK) continue;
        bool valid = false;
        char err[512];
        st = rl_schema_check(s, buf, len, &valid, err, sizeof err);
        CHECKF(st == RL_OK && valid, "%s: the grammar made an invalid text: %.300s\n  (%s)", what,
               buf, err);
        if (!(st == RL_OK && valid)) break;
        checked++;
    }
    free(buf);
    rl_grammar_free(g);
    return checked;
}

TEST(bench_schema) {
    size_t n;
    unsigned char *d = rl_test_read_file(rl_test_data("testdata/grammars/bench_schema.json"), &n);
    if (!d) SKIP("bench_schema.json not found");
    rl_status st;
    char *schema = malloc(n + 1);
    memcpy(schema, d, n);
    schema[n] = 0;
    free(d);
    char *text = to_gbnf(schema, 0, &st);
    CHECKF(st == RL_OK, "%s", g_err);
    rl_schema *s = NULL;
    CHECK_EQ_INT(rl_schema_compile(schema, n, NULL, &s, g_err, sizeof g_err), RL_OK);
    if (text && s) {
        int k = sample_validate("bench_schema", text, s, 300, 1500);
        CHECKF(k >= 250, "%d texts checked", k);
        rl_grammar *g = rl_test_compile_gbnf(text);
        const char *order =
            "{\"order_id\":\"ORD-000042\",\"status\":\"shipped\",\"customer\":{\"name\":"
            "\"Ann\",\"email\":\"ann@example.org\",\"address\":{\"street\":\"Main 1\","
            "\"city\":\"X\",\"country\":\"NL\",\"postcode\":\"1234 AB\"}},\"items\":"
            "[{\"sku\":\"ABC-0001\",\"quantity\":3,\"unit_price\":9.99,\"tags\":"
            "[\"new\"],\"options\":{\"gift_wrap\":true,\"color\":\"red\"}}],\"total\":"
            "29.97,\"created\":\"2024-05-01T12:00:00Z\",\"notes\":null}";
        if (g) CHECK(rl_test_gbnf_accepts(g, order, strlen(order)));
        rl_grammar_free(g);
    }
    rl_schema_free(s);
    rl_free_string(text);
    free(schema);
}

/* ---- the JSON-Schema-Test-Suite ------------------------------------------------------------ */

static const char *const SUITE_FILES[] = {"type",
                                          "properties",
                                          "required",
                                          "additionalProperties",
                                          "enum",
                                          "const",
                                          "anyOf",
                                          "oneOf",
                                          "allOf",
                                          "ref",
                                          "defs",
                                          "items",
                                          "prefixItems",
                                          "minItems",
                                          "maxItems",
                                          "minLength",
                                          "maxLength",
                                          "pattern",
                                          "minimum",
                                          "maximum",
                                          "exclusiveMinimum",
                                          "exclusiveMaximum",
                                          "refRemote"};

typedef struct remotes {
    char *text;
} remotes;

static const char *resolve_remote(void *user, const char *uri, size_t *len) {
    remotes *r = user;
    static const char prefix[] = "http://localhost:1234/";
    free(r->text);
    r->text = NULL;
    if (strncmp(uri, prefix, sizeof prefix - 1)) return NULL;
    char rel[512];
    snprintf(rel, sizeof rel, "testdata/json-schema-test-suite/remotes/%s",
             uri + sizeof prefix - 1);
    size_t n;
    r->text = (char *)rl_test_read_file(rl_test_data(rel), &n);
    *len = n;
    return r->text;
}

/* Whether every number in v has a text the grammars' number rule can write. */
static bool numbers_expressible(const json_t *v) {
    if (json_is_number(v)) {
        rl__sstr s = {0};
        rl__json_canon(v, &s);
        const char *p = s.p;
        if (*p == '-') p++;
        size_t ip = strspn(p, "0123456789");
        bool ok = ip >= 1 && ip <= 16 && !(ip > 1 && p[0] == '0');
        p += ip;
        if (ok && *p == '.') {
            size_t fp = strspn(p + 1, "0123456789");
            ok = fp >= 1 && fp <= 16;
            p += 1 + fp;
        }
        if (ok && (*p == 'e' || *p == 'E')) {
            p++;
            if (*p == '+' || *p == '-') p++;
            size_t ep = strspn(p, "0123456789");
            ok = ep >= 1 && ep <= 2;
            p += ep;
        }
        ok = ok && !*p;
        rl__sstr_free(&s);
        return ok;
    }
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++)
            if (!numbers_expressible(json_array_get(v, i))) return false;
    }
    if (json_is_object(v)) {
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x) {
            if (!numbers_expressible(x)) return false;
        }
    }
    return true;
}

static int factorial(int n) { return n <= 1 ? 1 : n * factorial(n - 1); }

/* Count the objects with 2..6 keys, depth first. */
static void collect_objs(const json_t *v, const json_t **objs, int *n) {
    if (json_is_object(v)) {
        if (json_object_size(v) >= 2 && json_object_size(v) <= 6 && *n < 8) objs[(*n)++] = v;
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x) collect_objs(x, objs, n);
    } else if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++) collect_objs(json_array_get(v, i), objs, n);
    }
}

typedef struct permset {
    const json_t *objs[8];
    int n;
    int choice[8]; /* permutation index per object */
} permset;

static void nth_perm(int n, int idx, int *out) {
    int pool[8];
    for (int i = 0; i < n; i++) pool[i] = i;
    for (int i = 0; i < n; i++) {
        int f = factorial(n - 1 - i);
        int k = idx / f;
        idx %= f;
        out[i] = pool[k];
        for (int j = k; j < n - 1 - i; j++) pool[j] = pool[j + 1];
    }
}

static void canon_with(const json_t *v, const permset *ps, rl__sstr *out) {
    if (json_is_object(v)) {
        size_t n = json_object_size(v);
        const char *keys[64];
        size_t m = 0;
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x) {
            if (m < 64) keys[m++] = k;
        }
        int order[8];
        bool permuted = false;
        for (int i = 0; i < ps->n; i++) {
            if (ps->objs[i] == v) {
                nth_perm((int)n, ps->choice[i], order);
                permuted = true;
            }
        }
        rl__sstr_putc(out, '{');
        for (size_t i = 0; i < m; i++) {
            const char *key = keys[permuted ? (size_t)order[i] : i];
            if (i) rl__sstr_putc(out, ',');
            rl__sstr_putc(out, '"');
            rl__json_canon_str(key, strlen(key), out);
            rl__sstr_puts(out, "\":");
            canon_with(json_object_get(v, key), ps, out);
        }
        rl__sstr_putc(out, '}');
    } else if (json_is_array(v)) {
        rl__sstr_putc(out, '[');
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i) rl__sstr_putc(out, ',');
            canon_with(json_array_get(v, i), ps, out);
        }
        rl__sstr_putc(out, ']');
    } else {
        rl__json_canon(v, out);
    }
}

/* Try the key orders of v (up to 5040 texts): how many the grammar accepts, stopping at
 * the first when stop_at_first. */
static int accepted_orders(const rl_grammar *g, const json_t *v, bool stop_at_first, int *tried) {
    permset ps = {0};
    collect_objs(v, ps.objs, &ps.n);
    int total = 1;
    for (int i = 0; i < ps.n && total < 5040; i++)
        total *= factorial((int)json_object_size(ps.objs[i]));
    if (total > 5040) total = 5040;
    int hits = 0;
    *tried = 0;
    for (int t = 0; t < total; t++) {
        int r = t;
        for (int i = 0; i < ps.n; i++) {
            int f = factorial((int)json_object_size(ps.objs[i]));
            ps.choice[i] = r % f;
            r /= f;
        }
        rl__sstr s = {0};
        canon_with(v, &ps, &s);
        (*tried)++;
        if (rl_test_gbnf_accepts(g, s.p, s.len)) hits++;
        rl__sstr_free(&s);
        if (hits && stop_at_first) break;
    }
    return hits;
}

TEST(suite_grammars) {
    int schemas = 0, unsupported = 0, valid_ok = 0, invalid_ok = 0, numbers_skipped = 0;
    int failures = 0, sampled = 0;
    remotes rem = {0};
    for (size_t f = 0; f < RL_ARRAY_LEN(SUITE_FILES); f++) {
        char rel[256];
        snprintf(rel, sizeof rel, "testdata/json-schema-test-suite/tests/draft2020-12/%s.json",
                 SUITE_FILES[f]);
        json_error_t je;
        json_t *groups = json_load_file(rl_test_data(rel), JSON_ALLOW_NUL, &je);
        if (!groups)
            groups =
                json_load_file(rl_test_data(rel), JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &je);
        if (!groups) {
            if (!strncmp(SUITE_FILES[f], "exclusive", 9)) continue;
            SKIP("%s not found", rel);
        }
        size_t gi;
        json_t *grp;
        json_array_foreach(groups, gi, grp) {
            const char *gdesc = json_string_value(json_object_get(grp, "description"));
            char *stext = json_dumps(json_object_get(grp, "schema"),
                                     JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
            rl_schema_params p = rl_schema_default_params();
            p.flags = RL_SCHEMA_LENIENT;
            p.resolve = resolve_remote;
            p.resolve_user = &rem;
            rl_schema *s = NULL;
            rl_status st = rl_schema_compile(stext, strlen(stext), &p, &s, g_err, sizeof g_err);
            free(stext);
            if (st != RL_OK) {
                unsupported++;
                fprintf(stderr, "  %s.json \"%s\": not compiled: %s\n", SUITE_FILES[f], gdesc,
                        g_err);
                continue;
            }
            char *gbnf = NULL;
            st = rl_schema_gbnf(s, RL_SCHEMA_EXTRA_PROPERTIES | RL_SCHEMA_NO_TYPE_INFERENCE, &gbnf,
                                g_err, sizeof g_err);
            if (st == RL_ERR_UNSUPPORTED ||
                (st == RL_ERR_INVALID_ARG && strstr(g_err, "no value"))) {
                unsupported++;
                fprintf(stderr, "  %s.json \"%s\": %s\n", SUITE_FILES[f], gdesc, g_err);
                rl_schema_free(s);
                continue;
            }
            CHECKF(st == RL_OK, "%s.json \"%s\": %s: %s", SUITE_FILES[f], gdesc, rl_status_str(st),
                   g_err);
            rl_grammar *g = gbnf ? rl_test_compile_gbnf(gbnf) : NULL;
            if (!g) {
                rl_schema_free(s);
                rl_free_string(gbnf);
                continue;
            }
            schemas++;
            size_t ti;
            json_t *t;
            json_array_foreach(json_object_get(grp, "tests"), ti, t) {
                const json_t *data = json_object_get(t, "data");
                bool valid = json_is_true(json_object_get(t, "valid"));
                const char *tdesc = json_string_value(json_object_get(t, "description"));
                int tried = 0;
                if (valid) {
                    if (!numbers_expressible(data)) {
                        numbers_skipped++;
                        continue;
                    }
                    int hits = accepted_orders(g, data, true, &tried);
                    if (hits)
                        valid_ok++;
                    else {
                        failures++;
                        char *d = json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY);
                        CHECKF(
                            false,
                            "%s.json \"%s\" / \"%s\": valid %s rejected in all %d key orders\n%s",
                            SUITE_FILES[f], gdesc, tdesc, d, tried, gbnf);
                        free(d);
                    }
                } else {
                    int hits = accepted_orders(g, data, true, &tried);
                    if (!hits)
                        invalid_ok++;
                    else {
                        failures++;
                        char *d = json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY);
                        CHECKF(false, "%s.json \"%s\" / \"%s\": INVALID %s accepted\n%s",
                               SUITE_FILES[f], gdesc, tdesc, d, gbnf);
                        free(d);
                    }
                }
            }
            rl_grammar_free(g);
            /* random texts of the grammar are valid */
            sampled += sample_validate(gdesc, gbnf, s, 25, 200);
            rl_free_string(gbnf);
            rl_schema_free(s);
        }
        json_decref(groups);
    }
    free(rem.text);
    fprintf(stderr,
            "  suite grammars: %d schemas converted, %d not expressible; valid instances "
            "accepted %d, invalid rejected %d, failures %d, valid instances skipped for number "
            "syntax %d; %d random texts validated\n",
            schemas, unsupported, valid_ok, invalid_ok, failures, numbers_skipped, sampled);
    CHECK(schemas >= 150);
    CHECK_EQ_INT(failures, 0);
}

/* ---- threads ----------------------------------------------------------------------------------
 */

typedef struct thr_arg {
    const char *schema, *want;
    int bad;
} thr_arg;

static void *thr(void *p) {
    thr_arg *a = p;
    for (int i = 0; i < 40; i++) {
        char *out = NULL;
        char err[256];
        uint32_t flags = i % 2 ? RL_SCHEMA_COMPACT : 0;
        if (rl_schema_to_gbnf(a->schema, strlen(a->schema), flags, &out, err, sizeof err) !=
                RL_OK ||
            (!flags && strcmp(out, a->want)))
            a->bad++;
        rl_free_string(out);
    }
    return NULL;
}

TEST(threads) {
    size_t n;
    unsigned char *d = rl_test_read_file(rl_test_data("testdata/grammars/bench_schema.json"), &n);
    if (!d) SKIP("bench_schema.json not found");
    char *schema = malloc(n + 1);
    memcpy(schema, d, n);
    schema[n] = 0;
    free(d);
    rl_status st;
    char *want = to_gbnf(schema, 0, &st);
    CHECK(st == RL_OK);
    pthread_t t[4];
    thr_arg a[4];
    for (int i = 0; i < 4; i++) {
        a[i] = (thr_arg){schema, want, 0};
        pthread_create(&t[i], NULL, thr, &a[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        CHECK_EQ_INT(a[i].bad, 0);
    }
    rl_free_string(want);
    free(schema);
}

/* ---- allocation failures ------------------------------------------------------------------ */

TEST(allocation_failures) {
    const char *schema =
        "{\"$defs\": {\"n\": {\"type\": \"object\", \"properties\": {\"v\": {\"type\": \"string\", "
        "\"pattern\": \"^[a-z]{1,3}(-[0-9])?$\"}, \"k\": {\"type\": \"array\", \"items\": "
        "{\"$ref\": "
        "\"#/$defs/n\"}, \"maxItems\": 3}, \"e\": {\"enum\": [1, \"x\"]}, \"i\": {\"type\": "
        "\"integer\", \"minimum\": -5, \"maximum\": 300}}, \"required\": [\"v\"], "
        "\"additionalProperties\": {\"type\": \"number\", \"minimum\": 0}}}, \"oneOf\": "
        "[{\"$ref\": "
        "\"#/$defs/n\"}, {\"type\": \"null\"}]}";
    rl_status st;
    char *ref = to_gbnf(schema, 0, &st);
    CHECKF(st == RL_OK, "%s", g_err);
    if (!ref) return;
    size_t base = rl_mem_in_use();
    int nomem = 0, ok = 0;
    for (long k = 1; k < 20000; k++) {
        rl__alloc_fail_after(k);
        char *out = NULL;
        st = rl_schema_to_gbnf(schema, strlen(schema), 0, &out, g_err, sizeof g_err);
        rl__alloc_fail_after(0);
        CHECKF(st == RL_OK || st == RL_ERR_NOMEM, "k=%ld: %s: %s", k, rl_status_str(st), g_err);
        if (st == RL_OK) {
            CHECK(out && !strcmp(out, ref));
            rl_free_string(out);
            CHECKF(rl_mem_in_use() == base, "k=%ld leaks", k);
            ok++;
            break;
        }
        CHECK(out == NULL);
        CHECKF(rl_mem_in_use() == base, "k=%ld leaks %zu bytes", k, rl_mem_in_use() - base);
        nomem++;
    }
    CHECK(nomem > 100 && ok == 1);
    rl_free_string(ref);
}

int main(void) {
    RUN(cases);
    RUN(integer_ranges);
    RUN(number_ranges);
    RUN(decimal_ranges);
    RUN(unsupported_and_errors);
    RUN(limits);
    RUN(json_mode);
    RUN(bench_schema);
    RUN(suite_grammars);
    RUN(threads);
    RUN(allocation_failures);
    return rl_test_finish();
}
