/*
 * schema_seeds.c - writes the seed corpus of fuzz_schema into the folder it is given: JSON
 * Schemas (mode byte 0, with and without flags), regular expressions (mode 1) and schema +
 * instance pairs (mode 2) that reach the converter's and validator's branches.
 */
#include <stdio.h>
#include <string.h>

static const char *const SCHEMAS[] = {
    "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"minLength\":1,"
    "\"maxLength\":20},\"age\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":150},\"tags\":"
    "{\"type\":\"array\",\"items\":{\"enum\":[\"a\",\"b\",1,null]},\"maxItems\":3}},"
    "\"required\":[\"name\"]}",
    "{\"$defs\":{\"n\":{\"type\":\"object\",\"properties\":{\"v\":{\"type\":\"number\","
    "\"exclusiveMinimum\":0},\"k\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/n\"}}}}},"
    "\"$ref\":\"#/$defs/n\"}",
    "{\"oneOf\":[{\"properties\":{\"t\":{\"const\":\"a\"},\"x\":{\"type\":\"integer\"}},"
    "\"required\":[\"t\"]},{\"properties\":{\"t\":{\"const\":\"b\"}},\"required\":[\"t\"]}]}",
    "{\"anyOf\":[{\"type\":\"string\",\"pattern\":\"^[a-z]{2}-\\\\d+$\"},{\"type\":\"null\"},"
    "{\"type\":\"string\",\"format\":\"date-time\"}]}",
    "{\"allOf\":[{\"properties\":{\"a\":{\"type\":\"integer\"}},\"additionalProperties\":false},"
    "{\"properties\":{\"a\":{\"maximum\":5},\"b\":{}},\"required\":[\"a\"]}]}",
    "{\"properties\":{\"a\":{}},\"patternProperties\":{\"^x-\":{\"type\":\"boolean\"}},"
    "\"additionalProperties\":false}",
    "{\"prefixItems\":[{\"type\":\"string\",\"format\":\"uuid\"},{\"const\":{\"k\":[1,2]}}],"
    "\"items\":{\"type\":\"number\",\"minimum\":-3,\"maximum\":7},\"minItems\":1,\"maxItems\":4}",
    "{\"$schema\":\"http://json-schema.org/draft-07/schema#\",\"definitions\":{\"e\":{\"type\":"
    "\"string\",\"format\":\"email\"}},\"items\":[{\"$ref\":\"#/definitions/e\"}],"
    "\"additionalItems\":false}",
    "{\"properties\":{\"q\\\"\\\\\\n\":{\"type\":[\"string\",\"integer\"],\"maxLength\":2}},"
    "\"additionalProperties\":{\"type\":\"boolean\"}}",
    "{\"type\":\"integer\",\"exclusiveMaximum\":-12,\"minimum\":-1000}",
    "{\"not\":{\"type\":\"null\"},\"multipleOf\":3}",
    "{\"unevaluatedProperties\":false,\"allOf\":[{\"properties\":{\"a\":{}}}],\"properties\":"
    "{\"b\":{}}}",
    "true",
    "{\"type\":\"number\",\"exclusiveMinimum\":-0.125,\"maximum\":2.25}",
    "{\"patternProperties\":{\"^x|y$\":{\"type\":\"boolean\"}},\"properties\":{\"a\":{}}}",
    "{\"allOf\":[{\"properties\":{\"a\":{\"type\":\"string\",\"format\":\"uri\"}}}],"
    "\"unevaluatedProperties\":{\"type\":\"integer\",\"minimum\":1.5}}",
    "{\"type\":\"array\",\"prefixItems\":[{\"enum\":[1,2]},{\"type\":\"null\"}],"
    "\"items\":{\"type\":\"string\",\"pattern\":\"^[a-c]{1,3}$\"},\"minItems\":3}",
};

static const char *const REGEXES[] = {
    "^[A-Z]{3}-[0-9]{4}$",
    "(ab|cd)*e?",
    "[^\\s\"]+@[\\w.-]+",
    "\\u00e9+|\\d{2,}|.",
    "(a?b?)+(c|)",
    "x{2,3}?[^]",
    "(?:(?<n>a)|[\\x41-\\x5a\\t])+",
    "a\\1",
    "(?=a)b",
};

static const char *const PAIRS[] = {
    "{\"items\":{\"maximum\":3},\"uniqueItems\":true}\n[1,2,{\"a\":1.0},{\"a\":1}]",
    "{\"properties\":{\"a\":{\"pattern\":\"^\\\\d+$\"}},\"required\":[\"a\"]}\n{\"a\":\"12x\"}",
    "{\"$id\":\"http://x.test/r\",\"$defs\":{\"a\":{\"$anchor\":\"A\",\"type\":\"string\"}},"
    "\"$ref\":\"#A\"}\n\"s\"",
    "{\"if\":{\"minimum\":5},\"then\":{\"multipleOf\":2},\"else\":{\"const\":1}}\n6",
};

static int put(const char *dir, const char *kind, int i, unsigned char mode, const char *text) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s-%02d-%u", dir, kind, i, mode);
    FILE *f = fopen(path, "wb");
    if (!f) return 1;
    fputc(mode, f);
    fputs(text, f);
    return fclose(f) != 0;
}

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    int bad = 0;
    for (int i = 0; i < (int)(sizeof SCHEMAS / sizeof *SCHEMAS); i++) {
        bad |= put(argv[1], "schema", i, 0, SCHEMAS[i]);
        bad |= put(argv[1], "schema", i, (unsigned char)(0 | (2u << 2)), SCHEMAS[i]); /* extras */
        bad |= put(argv[1], "schema", i, (unsigned char)(0 | (9u << 2)),
                   SCHEMAS[i]); /* lenient, compact */
    }
    for (int i = 0; i < (int)(sizeof REGEXES / sizeof *REGEXES); i++)
        bad |= put(argv[1], "regex", i, 1, REGEXES[i]);
    for (int i = 0; i < (int)(sizeof PAIRS / sizeof *PAIRS); i++)
        bad |= put(argv[1], "pair", i, 2, PAIRS[i]);
    return bad;
}
