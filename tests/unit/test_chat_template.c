/* Tests of the chat-template interpreter: every case of
 * testdata/chat-templates/cases.json (real templates, renderings by Python jinja2 as
 * transformers sets it up) byte for byte, expected errors raised; then unit tests of the
 * interpreter: expressions, filters, tests, methods, whitespace control, loop controls,
 * scoping, macros, error positions and the limits against hostile templates. */
#include "test.h"

#include "ruvllm.h"
#include "util/util.h"

#include <jansson.h>
#include <pthread.h>
#include <time.h>

#define PINNED_NOW 1721952000 /* 2024-07-26 00:00:00 UTC: the fixtures' strftime_now */

/* ---- helpers ------------------------------------------------------------------ */

/* Render src with messages (JSON text); returns the status, output in *out (freed by
 * the caller with rl_free_string) or the message in err. */
static rl_status render_ex(const char *src, const char *messages, const char *tools,
                           const rl_chat_template_params *p, char **out, char *err, size_t n) {
    rl_chat_template *t = NULL;
    *out = NULL;
    rl_status st = rl_chat_template_compile(src, strlen(src), &t, err, n);
    if (st != RL_OK) return st;
    st = rl_chat_template_render(t, messages, tools, p, out, NULL, err, n);
    rl_chat_template_free(t);
    return st;
}

static char g_err[1024];

/* Render with no messages and default params; returns a static copy of the output, or
 * "ERR: <message>". */
static const char *R(const char *src) {
    static char buf[16384];
    char *out;
    rl_chat_template_params p = rl_chat_template_default_params();
    p.now = PINNED_NOW;
    p.bos_token = "<s>";
    p.eos_token = "</s>";
    rl_status st = render_ex(src, "[{\"role\": \"user\", \"content\": \"hi\"}]", NULL, &p, &out, g_err,
                             sizeof(g_err));
    if (st != RL_OK) {
        snprintf(buf, sizeof(buf), "ERR: %s", g_err);
        return buf;
    }
    snprintf(buf, sizeof(buf), "%s", out);
    rl_free_string(out);
    return buf;
}

#define CHECK_R(src, want) CHECKF(strcmp(R(src), want) == 0, "%s\n  got:  [%s]\n  want: [%s]", src, R(src), want)
#define CHECK_ERR(src, substr)                                                                     \
    do {                                                                                           \
        const char *got_ = R(src);                                                                 \
        CHECKF(strncmp(got_, "ERR: ", 5) == 0 && strstr(got_, substr), "%s\n  got: [%s]\n  want error with [%s]", \
               src, got_, substr);                                                                 \
    } while (0)

/* ---- cases.json ----------------------------------------------------------------- */

static char *read_text(const char *path) {
    size_t n;
    unsigned char *d = rl_test_read_file(path, &n);
    if (!d) return NULL;
    char *s = realloc(d, n + 1);
    if (!s) {
        free(d);
        return NULL;
    }
    s[n] = 0;
    return s;
}

static void show_diff(const char *id, const char *got, const char *want) {
    size_t i = 0;
    while (got[i] && got[i] == want[i]) i++;
    size_t from = i > 60 ? i - 60 : 0;
    fprintf(stderr, "  %s: differs at byte %zu\n    got:  [%.120s]\n    want: [%.120s]\n", id, i, got + from,
            want + from);
}

TEST(cases_json) {
    const char *dir = rl_test_data("testdata/chat-templates");
    char path[1024];
    snprintf(path, sizeof(path), "%s/cases.json", dir);
    json_error_t je;
    json_t *cases = json_load_file(path, 0, &je);
    if (!cases) SKIP("no %s", path);
    size_t n = json_array_size(cases), pass = 0, fail = 0;
    const char *only = getenv("RL_TEMPLATE_CASE");
    for (size_t i = 0; i < n; i++) {
        json_t *k = json_array_get(cases, i);
        const char *id = json_string_value(json_object_get(k, "id"));
        if (only && !strstr(id, only)) continue;
        const char *tname = json_string_value(json_object_get(k, "template"));
        snprintf(path, sizeof(path), "%s/templates/%s", dir, tname);
        char *src = read_text(path);
        CHECKF(src != NULL, "cannot read %s", path);
        if (!src) continue;
        char *msgs = json_dumps(json_object_get(k, "messages"), JSON_COMPACT | JSON_ENCODE_ANY);
        json_t *jt = json_object_get(k, "tools");
        char *tools = jt && !json_is_null(jt) ? json_dumps(jt, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
        json_t *jx = json_object_get(k, "extra_vars");
        char *extra = jx ? json_dumps(jx, JSON_COMPACT) : NULL;
        rl_chat_template_params p = rl_chat_template_default_params();
        p.add_generation_prompt = json_is_true(json_object_get(k, "add_generation_prompt"));
        p.bos_token = json_string_value(json_object_get(k, "bos_token"));
        p.eos_token = json_string_value(json_object_get(k, "eos_token"));
        p.extra_json = extra;
        p.now = PINNED_NOW;
        char *out = NULL, err[1024];
        rl_status st = render_ex(src, msgs, tools, &p, &out, err, sizeof(err));
        const char *want = json_string_value(json_object_get(k, "expected"));
        const char *want_err = json_string_value(json_object_get(k, "expected_error"));
        const char *etype = json_string_value(json_object_get(k, "error_type"));
        bool ok;
        if (want) {
            ok = st == RL_OK && strcmp(out, want) == 0;
            if (!ok && st != RL_OK) fprintf(stderr, "  %s: error: %s\n", id, err);
            else if (!ok) show_diff(id, out, want);
        } else {
            /* an error is expected; raise_exception's text must match */
            ok = st != RL_OK && st != RL_ERR_NOMEM && st != RL_ERR_INTERNAL;
            if (ok && etype && strcmp(etype, "TemplateError") == 0) ok = strstr(err, want_err) != NULL;
            if (!ok) fprintf(stderr, "  %s: expected error [%s], got %s: %s\n", id, want_err, rl_status_str(st),
                             st == RL_OK ? "(rendered)" : err);
        }
        if (ok) pass++;
        else fail++;
        rl_free_string(out);
        free(msgs);
        free(tools);
        free(extra);
        free(src);
    }
    fprintf(stderr, "cases.json: %zu passed, %zu failed of %zu\n", pass, fail, pass + fail);
    CHECKF(fail == 0, "%zu of %zu cases failed", fail, pass + fail);
    json_decref(cases);
}

/* ---- tables verified against jinja2 3.1 in transformers' environment --------------- */

struct row {
    const char *src, *want;
};

static const struct row EXPRESSIONS[] = {
    {"{{ 1 + 2 * 3 }}",
     "7"},
    {"{{ (1 + 2) * 3 }}",
     "9"},
    {"{{ 7 / 2 }}",
     "3.5"},
    {"{{ 7 // 2 }}|{{ -7 // 2 }}|{{ 7.5 // 2 }}",
     "3|-4|3.0"},
    {"{{ -7 % 3 }}|{{ 7 % -3 }}|{{ -7.5 % 2 }}",
     "2|-2|0.5"},
    {"{{ 2 ** 10 }}|{{ 2 ** -1 }}|{{ 2 ** 3 ** 2 }}",
     "1024|0.5|64"},
    {"{{ -2 ** 2 }}",
     "4"},
    {"{{ 0.1 + 0.2 }}|{{ 1e16 }}|{{ 1e15 }}|{{ 1e-5 }}|{{ 0.0001 }}|{{ -0.0 }}|{{ 1/3 }}",
     "0.30000000000000004|1e+16|1000000000000000.0|1e-05|0.0001|-0.0|0.3333333333333333"},
    {"{{ 'a' ~ 1 ~ 2.5 ~ none ~ true }}",
     "a12.5NoneTrue"},
    {"{{ 'a' + 'b' ~ 'c' }}",
     "abc"},
    {"{{ 'ab' * 3 }}|{{ [1] * 2 }}",
     "ababab|[1, 1]"},
    {"{{ [1, 2] + [3] }}|{{ (1, 2) + (3,) }}",
     "[1, 2, 3]|(1, 2, 3)"},
    {"{{ 1 < 2 < 3 }}|{{ 3 > 2 > 2 }}|{{ 1 == 1.0 }}|{{ true == 1 }}",
     "True|False|True|True"},
    {"{{ 'a' in 'cat' }}|{{ 'z' not in 'cat' }}|{{ 1 in [1, 2] }}|{{ 'k' in {'k': 1} }}|{{ 'x' in nothing }}",
     "True|True|True|True|False"},
    {"{{ 0 or 'x' }}|{{ '' and 'y' }}|{{ 1 and 2 }}|{{ not [] }}|{{ not 'a' }}",
     "x||2|True|False"},
    {"{{ 'yes' if 1 else 'no' }}|{{ 'yes' if 0 }}|",
     "yes||"},
    {"{{ 1 if false else 2 if false else 3 }}",
     "3"},
    {"{{ [1, 2, 3][-1] }}|{{ [1, 2, 3][1:] }}|{{ [1, 2, 3][::-1] }}|{{ [1, 2, 3][5] }}",
     "3|[2, 3]|[3, 2, 1]|"},
    {"{{ 'héllo'[1] }}|{{ 'héllo'[1:3] }}|{{ 'héllo'[::-1] }}|{{ 'héllo'[-2:] }}",
     "é|él|olléh|lo"},
    {"{{ [1, 'a', none, true, 1.5, [2], {'k': 'v'}] }}",
     "[1, 'a', None, True, 1.5, [2], {'k': 'v'}]"},
    {"{{ {'a': [1, 2], 'b': {'c': none}} }}|{{ (1,) }}|{{ () }}",
     "{'a': [1, 2], 'b': {'c': None}}|(1,)|()"},
    {"{{ [\"it's\", 'say \"hi\"', 'a\\nb\\t', 'é\\u200b\\x00'] }}",
     "[\"it's\", 'say \"hi\"', 'a\\nb\\t', 'é\\u200b\\x00']"},
    {"{{ 'it''s' }}|{{ 'a\\'b' }}|{{ \"\\x41\\101\\u00e9\\d\" }}",
     "its|a'b|AAé\\d"},
    {"{{ {'a': 1}.a }}|{{ {'a': 1}['a'] }}|{{ {'a': 1}.b is defined }}",
     "1|1|False"},
    {"{{ messages[0].role }}|{{ messages[0]['content'] }}|{{ messages.0.role }}|{{ messages | length }}",
     "user|hi|user|1"},
    {"{{ bos_token ~ eos_token }}|{{ tools }}|{{ documents }}|{{ add_generation_prompt }}",
     "<s></s>|None|None|True"},
    {"{{ range(3) | list }}|{{ range(1, 10, 3) | list }}|{{ range(5, 0, -2) | list }}|{{ range(3) }}",
     "[0, 1, 2]|[1, 4, 7]|[5, 3, 1]|range(0, 3)"},
    {"{{ namespace(a=1).a }}|{{ dict(a=1, b=2) }}",
     "1|{'a': 1, 'b': 2}"},
    {"{{ '%s-%d|%5.2f|%-4d|%x|%r' % ('x', 3, 3.14159, 7, 255, 'q') }}",
     "x-3| 3.14|7   |ff|'q'"},
    {"{{ '%(a)s' % {'a': 5} }}|{{ '%d%%' % 50 }}|{{ '%5s|%-5s|%.1s' % ('ab', 'cd', 'ef') }}",
     "5|50%|   ab|cd   |e"},
    {"{{ none.x is defined }}|{{ 5[0] is defined }}|{{ 'abc'[5:] }}|",
     "False|False||"},
    {"{{ strftime_now('%Y-%m-%d %a %b %d') }}",
     "2024-07-26 Fri Jul 26"},
    {"{{ 9223372036854775807 }}|{{ -9223372036854775807 - 1 }}",
     "9223372036854775807|-9223372036854775808"},
    {"{{ 1.5 | string }}|{{ [1.5, 2.0] | string }}|{{ 100.0 }}|{{ 1e22 }}|{{ 123456789.123 }}",
     "1.5|[1.5, 2.0]|100.0|1e+22|123456789.123"},
};

static const struct row FILTERS[] = {
    {"{{ '  x  ' | trim }}|{{ 'xxhixx' | trim('x') }}",
     "x|hi"},
    {"{{ 'Hello World' | lower }}|{{ 'hello' | upper }}|{{ 'hello WORLD' | title }}|{{ 'hello WORLD' | capitalize }}",
     "hello world|HELLO|Hello World|Hello world"},
    {"{{ 'a-b c(d' | title }}|{{ 'ß' | upper }}|{{ 'ÀÉ' | lower }}",
     "A-B C(D|SS|àé"},
    {"{{ [3, 1, 2] | sort }}|{{ [3, 1, 2] | sort(reverse=true) }}|{{ ['b', 'A', 'a'] | sort }}",
     "[1, 2, 3]|[3, 2, 1]|['A', 'a', 'b']"},
    {"{{ [{'n': 2}, {'n': 1}] | sort(attribute='n') }}",
     "[{'n': 1}, {'n': 2}]"},
    {"{{ [1, 2, 2, 3, 1] | unique | list }}|{{ ['a', 'A', 'b'] | unique | list }}",
     "[1, 2, 3]|['a', 'b']"},
    {"{{ [1, 2, 3] | first }}|{{ [1, 2, 3] | last }}|{{ [] | first }}|{{ 'abc' | first }}",
     "1|3||a"},
    {"{{ [1, 2, 3] | length }}|{{ 'héllo' | length }}|{{ {'a': 1} | count }}",
     "3|5|1"},
    {"{{ [1, 2, 3] | sum }}|{{ [1, 2, 3] | sum(start=10) }}|{{ [1, 2, 3] | max }}|{{ [3, 1] | min }}|{{ ['b', 'A'] | max }}",
     "6|16|3|1|b"},
    {"{{ [1, 2, 3] | join(',') }}|{{ [1, 2] | join }}|{{ [{'a': 'x'}, {'a': 'y'}] | join(',', attribute='a') }}",
     "1,2,3|12|x,y"},
    {"{{ [1, 2, 3] | map('string') | join('-') }}|{{ [{'a': 1}, {'b': 2}] | map(attribute='a') | list }}|{{ [{'a': 1}, {'b': 2}] | map(attribute='a', default=9) | list }}",
     "1-2-3|[1, Undefined]|[1, 9]"},
    {"{{ [1, 2, 3, 4] | select('odd') | list }}|{{ [1, 2, 3, 4] | reject('odd') | list }}|{{ [1, 2, 3, 4] | select('>', 2) | list }}|{{ [0, 1, '', 2] | select | list }}",
     "[1, 3]|[2, 4]|[3, 4]|[1, 2]"},
    {"{{ [{'r': 'u'}, {'r': 'a'}] | selectattr('r', 'equalto', 'u') | list }}|{{ [{'r': 'u'}, {'x': 1}] | rejectattr('r', 'defined') | list }}",
     "[{'r': 'u'}]|[{'x': 1}]"},
    {"{{ {'b': 1, 'a': 2} | dictsort }}|{{ {'b': 1, 'A': 2, 'a': 3} | dictsort }}|{{ {'b': 1, 'a': 2} | dictsort(by='value') }}",
     "[('a', 2), ('b', 1)]|[('A', 2), ('a', 3), ('b', 1)]|[('b', 1), ('a', 2)]"},
    {"{{ {'b': 1, 'a': 2} | items | list }}|{{ {'b': 1} | list }}|{{ 'abc' | list }}",
     "[('b', 1), ('a', 2)]|['b']|['a', 'b', 'c']"},
    {"{{ 'abc' | reverse }}|{{ [1, 2, 3] | reverse | list }}",
     "cba|[3, 2, 1]"},
    {"{{ 3.7 | round }}|{{ 2.5 | round }}|{{ 2.675 | round(2) }}|{{ 3.14159 | round(2, 'floor') }}|{{ 3 | round }}|{{ -3.7 | abs }}",
     "4.0|2.0|2.67|3.14|3|3.7"},
    {"{{ '12' | int }}|{{ '1.9' | int }}|{{ 'x' | int }}|{{ 'x' | int(5) }}|{{ 3.9 | int }}|{{ '0x1A' | int(0, 16) }}|{{ '12' | float }}|{{ 'x' | float }}",
     "12|1|0|5|3|26|12.0|0.0"},
    {"{{ none | default('d') }}|{{ nothing | default('d') }}|{{ '' | default('d') }}|{{ '' | default('d', true) }}|{{ false | d('z', true) }}",
     "None|d||d|z"},
    {"{{ '%s and %s' | format('a', 'b') }}|{{ 'a b  c' | wordcount }}|{{ 'hello world foo' | truncate(9) }}|{{ 'hello world foo bar baz qux' | truncate(12, true) }}",
     "a and b|3|hello...|hello wor..."},
    {"{{ '<a href=\"x\">&' | e }}|{{ 'x' | safe + '<' }}|{{ '<' + 'x' | safe }}|{{ ('<' | safe) ~ '<' }}|{{ '<' | safe | escape }}",
     "&lt;a href=&#34;x&#34;&gt;&amp;|x&lt;|&lt;x|<<|<"},
    {"{{ 'ab' | center(6) }}|{{ 'abc' | center(6) }}|",
     "  ab  | abc  |"},
    {"{{ 'a\\nb\\n\\nc' | indent }}|{{ 'a\\nb\\n\\nc' | indent(2, true) }}|{{ 'a\\nb\\n\\nc' | indent(2, true, true) }}|{{ 'a\\nb' | indent('--') }}",
     "a\n    b\n\n    c|  a\n  b\n\n  c|  a\n  b\n  \n  c|a\n--b"},
    {"{{ [1, 2, 3, 4, 5] | batch(2) | list }}|{{ [1, 2, 3, 4, 5] | batch(2, 0) | list }}|{{ [1, 2, 3, 4, 5] | slice(2) | list }}",
     "[[1, 2], [3, 4], [5]]|[[1, 2], [3, 4], [5, 0]]|[[1, 2, 3], [4, 5]]"},
    {"{{ {'a': 'é', 'b': [1.5, none, true]} | tojson }}|{{ {'a': 'é'} | tojson(ensure_ascii=true) }}",
     "{\"a\": \"é\", \"b\": [1.5, null, true]}|{\"a\": \"\\u00e9\"}"},
    {"{{ [1, {'a': 2}, []] | tojson(indent=2) }}",
     "[\n  1,\n  {\n    \"a\": 2\n  },\n  []\n]"},
    {"{{ {'b': 1, 'a': {}} | tojson(indent=2, sort_keys=true) }}|{{ {'a': 1, 'b': [2]} | tojson(separators=(',', ':')) }}",
     "{\n  \"a\": {},\n  \"b\": 1\n}|{\"a\":1,\"b\":[2]}"},
    {"{{ '\\u2028\"\\\\\\n\\x01\\x7f' | tojson }}|{{ 1e100 | tojson }}|{{ {1: 2, none: 3, true: 4, 1.5: 5} | tojson }}|{{ '😀' | tojson(ensure_ascii=true) }}|{{ (1, 2) | tojson }}",
     "\" \\\"\\\\\\n\\u0001\"|1e+100|{\"1\": 4, \"null\": 3, \"1.5\": 5}|\"\\ud83d\\ude00\"|[1, 2]"},
    {"{{ ['x', 'y'] | tojson(indent='\\t') }}|{{ {'a': []} | tojson(indent=0) }}",
     "[\n\t\"x\",\n\t\"y\"\n]|{\n\"a\": []\n}"},
    {"{{ 'test' | replace('t', 'T') }}|{{ 'aaa' | replace('a', 'b', 2) }}|{{ 5 | replace('5', '6') }}|{{ none | replace('N', 'n') }}",
     "TesT|bba|6|none"},
    {"{{ [[1, 2], [3, 4]] | map('first') | list }}|{{ 'abc' | map('upper') | list }}|{{ [{'v': 1}, {'v': 2}] | sum(attribute='v') }}|{{ 1.0 | int }}|{{ '  3  ' | int }}|{{ true | int }}",
     "[1, 3]|['A', 'B', 'C']|3|1|3|1"},
    {"{{ [1, 2] | select is defined }}|{{ [1, 2] | select is iterable }}|{% if [] | select %}truthy{% endif %}",
     "True|True|truthy"},
};

static const struct row TESTS_METHODS[] = {
    {"{{ [1] is sequence }}|{{ 'x' is string }}|{{ {} is mapping }}|{{ [] is iterable }}|{{ 'x' is iterable }}|{{ nothing is iterable }}|{{ {} is sequence }}",
     "True|True|True|True|True|True|True"},
    {"{{ 1 is number }}|{{ true is number }}|{{ 1.0 is float }}|{{ 1 is integer }}|{{ true is integer }}|{{ true is boolean }}|{{ none is none }}",
     "True|True|True|True|False|True|True"},
    {"{{ x is undefined }}|{{ x is defined }}|{{ 3 is odd }}|{{ 4 is even }}|{{ 9 is divisibleby 3 }}|{{ 'abc' is lower }}|{{ 'ABC' is upper }}",
     "True|False|True|True|True|True|True"},
    {"{{ 2 is eq 2 }}|{{ 2 is ne 3 }}|{{ 2 is lt 3 }}|{{ 2 is gt 3 }}|{{ 2 is in [2] }}|{{ none is sameas none }}|{{ range is callable }}|{{ 0 is false }}|{{ true is true }}",
     "True|True|True|False|True|True|True|False|True"},
    {"{{ 'a,b,,c'.split(',') }}|{{ 'a b  c '.split() }}|{{ ' a b  c '.split(none, 1) }}|{{ ' a b  c '.rsplit(none, 1) }}|{{ 'a,b,c'.rsplit(',', 1) }}",
     "['a', 'b', '', 'c']|['a', 'b', 'c']|['a', 'b  c ']|[' a b', 'c']|['a,b', 'c']"},
    {"{{ '  hi  '.strip() }}|{{ '--hi--'.strip('-') }}|{{ '  hi'.lstrip() }}|{{ 'hi  '.rstrip() }}|{{ '\\n\\nx\\n'.lstrip('\\n') }}",
     "hi|hi|hi|hi|x\n"},
    {"{{ 'hello'.startswith('he') }}|{{ 'hello'.startswith(('x', 'h')) }}|{{ 'hello'.endswith('lo') }}|{{ 'hello'.replace('l', 'L') }}|{{ 'hello'.replace('l', 'L', 1) }}|{{ 'ab'.replace('', '-') }}",
     "True|True|True|heLLo|heLlo|-a-b-"},
    {"{{ 'hello'.find('l') }}|{{ 'hello'.rfind('l') }}|{{ 'hello'.find('z') }}|{{ 'hello'.count('l') }}|{{ '-'.join(['a', 'b']) }}",
     "2|3|-1|2|a-b"},
    {"{{ '{}-{}'.format(1, 'a') }}|{{ '{0}{1}{0}'.format('a', 'b') }}|{{ '{x}'.format(x=5) }}|{{ '{:>5}|{:<5}|{:^5}'.format('a', 'b', 'c') }}",
     "1-a|aba|5|    a|b    |  c  "},
    {"{{ '{:05d}|{:.2f}|{:x}|{:,}'.format(42, 3.14159, 255, 1234567) }}|{{ '{!r}'.format('a') }}|{{ '{:+d}'.format(5) }}|{{ '{0[a]}'.format({'a': 1}) }}|{{ '{}'.format(1.5) }}",
     "00042|3.14|ff|1,234,567|'a'|+5|1|1.5"},
    {"{{ 'hello world'.title() }}|{{ 'hELLO wORLD'.capitalize() }}|{{ 'Hello'.swapcase() }}|{{ '5'.zfill(3) }}|{{ '-5'.zfill(4) }}|{{ 'ab'.ljust(4, '*') }}|{{ 'ab'.rjust(4) }}",
     "Hello World|Hello world|hELLO|005|-005|ab**|  ab"},
    {"{{ 'a=b=c'.partition('=') }}|{{ 'a=b=c'.rpartition('=') }}|{{ '123'.isdigit() }}|{{ 'abc'.isalpha() }}|{{ 'Hello World'.istitle() }}|{{ 'x.txt'.removesuffix('.txt') }}",
     "('a', '=', 'b=c')|('a=b', '=', 'c')|True|True|True|x"},
    {"{{ 'a\\nb\\r\\nc'.splitlines() }}|{{ 'a\\nb'.splitlines(true) }}|{{ [1, 2, 3].index(2) }}|{{ [1, 2, 2].count(2) }}",
     "['a', 'b', 'c']|['a\\n', 'b']|1|2"},
    {"{{ {'a': 1}.items() }}|{{ {'a': 1}.keys() }}|{{ {'a': 1}.values() }}|{{ {'a': 1}.get('a') }}|{{ {'a': 1}.get('b') }}|{{ {'a': 1}.get('b', 2) }}",
     "dict_items([('a', 1)])|dict_keys(['a'])|dict_values([1])|1|None|2"},
    {"{{ messages[0].items() | list }}|{{ messages[0].missing }}|{{ messages[0].missing is defined }}",
     "[('role', 'user'), ('content', 'hi')]||False"},
    {"{% set d = {'items': 1} %}{{ d['items'] }}|{{ d.items() | list }}",
     "1|[('items', 1)]"},
};

static const struct row STATEMENTS[] = {
    {"{% for x in [1, 2, 3] %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}|{% endfor %}",
     "1032TrueFalse3|2121FalseFalse3|3210FalseTrue3|"},
    {"{% for x in [1, 2, 3] %}{{ loop.previtem }}-{{ loop.nextitem }}|{% endfor %}",
     "-2|1-3|2-|"},
    {"{% for x in [1, 2, 3, 4] if x is odd %}{{ x }}{{ loop.index }}/{{ loop.length }} {% endfor %}",
     "11/2 32/2 "},
    {"{% for x in [] %}a{% else %}empty{% endfor %}|{% for x in [1] if false %}a{% else %}empty{% endfor %}",
     "empty|empty"},
    {"{% for x in [1, 2, 3] %}{% if x == 2 %}{% continue %}{% endif %}{{ x }}{% endfor %}|{% for x in [1, 2, 3] %}{% if x == 2 %}{% break %}{% endif %}{{ x }}{% endfor %}",
     "13|1"},
    {"{% for x in [1, 2] %}{% break %}{% else %}E{% endfor %}|{% for x in [1, 2] %}{% if x == 2 %}{% break %}{% endif %}{% else %}E{% endfor %}",
     "E|"},
    {"{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %}|{% for k, v in {'a': 1} | items %}{{ k }}{{ v }}{% endfor %}",
     "a=1;b=2;|a1"},
    {"{% for a in 'héé' %}[{{ a }}]{% endfor %}|{% for a in {'x': 1, 'y': 2} %}{{ a }}{% endfor %}|{% for a in nothing %}{{ a }}{% else %}none{% endfor %}",
     "[h][é][é]|xy|none"},
    {"{% for x in [1, 2] %}{% for y in 'ab' %}{{ loop.index }}{{ x }}{{ y }} {% endfor %}{{ loop.index }}|{% endfor %}",
     "11a 21b 1|12a 22b 2|"},
    {"{% for x in [1, 2, 3] %}{{ loop.cycle('a', 'b') }}{% endfor %}|{% for x in [1, 1, 2] %}{{ loop.changed(x) }}{% endfor %}",
     "aba|TrueFalseTrue"},
    {"{% set x = 1 %}{% for i in [1] %}{% set x = 2 %}{{ x }}{% endfor %}{{ x }}",
     "21"},
    {"{% set ns = namespace(x=1) %}{% for i in [1, 2] %}{% set ns.x = ns.x + i %}{% endfor %}{{ ns.x }}",
     "4"},
    {"{% set x = 1 %}{% if true %}{% set x = 2 %}{% endif %}{{ x }}|{% set a, b = 1, 2 %}{{ a }}{{ b }}",
     "2|12"},
    {"{% set x %}hello {{ 1 + 1 }}{% endset %}[{{ x }}]|{% set y | upper %}hello{% endset %}[{{ y }}]",
     "[hello 2]|[HELLO]"},
    {"{% macro m(a, b=2) %}{{ a }}+{{ b }}{% endmacro %}{{ m(1) }}|{{ m(1, 3) }}|{{ m(b=5, a=4) }}",
     "1+2|1+3|4+5"},
    {"{% macro m(a) %}{{ a }}{{ varargs }}{{ kwargs }}{% endmacro %}{{ m(1, 2, 3, z=4) }}|{% macro n(a) %}[{{ a }}]{% endmacro %}{{ n() }}",
     "1(2, 3){'z': 4}|[]"},
    {"{% macro f(n) %}{% if n > 0 %}{{ n }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(5) }}",
     "54321"},
    {"{% macro w() %}<{{ caller() }}>{% endmacro %}{% call w() %}inside{% endcall %}|{% macro v() %}<{{ caller(5) }}>{% endmacro %}{% call(x) v() %}got {{ x }}{% endcall %}",
     "<inside>|<got 5>"},
    {"{% set v = 1 %}{% macro m() %}{{ v }}{% endmacro %}{% set v = 2 %}{{ m() }}",
     "2"},
    {"{% filter upper %}abc {{ 'd' }}{% endfilter %}|{% filter trim %}   x   {% endfilter %}|",
     "ABC D|x|"},
    {"{% with a = 1, b = 2 %}{{ a + b }}{% endwith %}{{ a }}|{% raw %}{{ not parsed }}{% endraw %}|{% print 1 + 1 %}",
     "3|{{ not parsed }}|2"},
    {"{% for m in messages %}{% generation %}{{ loop.index }}{% set q = 1 %}{% endgeneration %}{{ q }}{% endfor %}",
     "1"},
    {"{% if 1 %}a{% elif 2 %}b{% else %}c{% endif %}{% if 0 %}a{% elif 2 %}b{% else %}c{% endif %}{% if 0 %}a{% elif 0 %}b{% else %}c{% endif %}",
     "abc"},
    {"{% if false %}{{ 1 | nosuchfilter }}{% endif %}ok|{{ 1 | nosuchfilter if false else 2 }}",
     "ok|2"},
    {"{% set g = [1, 2, 3] | select %}{{ g | list }}{{ g | list }}|{% set h = [1, 2, 3] | select %}{{ h | first }}{{ h | list }}",
     "[1, 2, 3][]|1[2, 3]"},
};

static const struct row WHITESPACE[] = {
    {"a\n{% if true %}\nb\n{% endif %}\nc",
     "a\nb\nc"},
    {"a\n  {% if true %}\n  b\n  {% endif %}\nc",
     "a\n  b\nc"},
    {"a\n  {%- if true -%}\n  b\n  {%- endif -%}\nc",
     "abc"},
    {"a  {% if true %}b{% endif %}  c",
     "a  b  c"},
    {"a\n\t {% if true %}x{% endif %}",
     "a\nx"},
    {"  {% if true %}x{% endif %}",
     "x"},
    {"a\n  {{ 1 }}\n  b",
     "a\n  1\n  b"},
    {"a  {{- 1 -}}  b",
     "a1b"},
    {"a\n  {#- c -#}\n  b",
     "ab"},
    {"a\n  {# c #}\nb",
     "a\nb"},
    {"a\n  {%+ if true %}x{% endif %}",
     "a\n  x"},
    {"a {% if true +%}\nx{% endif %}",
     "a \nx"},
    {"a\n    {% raw %}\n  x\n    {% endraw %}\nb",
     "a\n\n  x\nb"},
    {"{% for x in [1, 2] %}\n  {{ x }}\n{% endfor %}\n",
     "  1\n  2\n"},
    {"{% for x in [1, 2] -%}\n  {{ x }}\n{%- endfor %}",
     "12"},
    {"x\r\ny\r\n{% if true %}\r\nz\r\n{% endif %}\r\n",
     "x\ny\nz\n"},
    {"trailing\n\n",
     "trailing\n"},
    {"a{%- if true %} b {% endif -%} c",
     "a b c"},
    {"{%- set x = 1 -%}\n\n   {{ x }}",
     "1"},
    {"   \n  {% if 1 %}x{% endif %}",
     "   \nx"},
    {"a　{%- if 1 %}x{% endif %}",
     "ax"},
    {"{{ 'x' }}\n{% if 1 %}y{% endif %}",
     "x\ny"},
    {"  {{ 'x' }}{% if 1 %}y{% endif %}",
     "  xy"},
    {"line1\n{% set x = 1 %}   \nline2",
     "line1\n   \nline2"},
    {"a {#- c #} b",
     "a b"},
    {"a\n{%   if true   -%}\n\n\nb{%endif%}",
     "a\nb"},
};

static void run_table(const struct row *rows, size_t n) {
    for (size_t i = 0; i < n; i++) CHECK_R(rows[i].src, rows[i].want);
}

TEST(expressions) { run_table(EXPRESSIONS, RL_ARRAY_LEN(EXPRESSIONS)); }
TEST(filters) { run_table(FILTERS, RL_ARRAY_LEN(FILTERS)); }
TEST(tests_and_methods) { run_table(TESTS_METHODS, RL_ARRAY_LEN(TESTS_METHODS)); }
TEST(statements) { run_table(STATEMENTS, RL_ARRAY_LEN(STATEMENTS)); }
TEST(whitespace_control) { run_table(WHITESPACE, RL_ARRAY_LEN(WHITESPACE)); }

/* Errors: the message jinja2 gives (Python's text), and positions of syntax errors. */
TEST(errors) {
    static const struct row E[] = {
        {"{{ 1 + 2 ~ 3 }}", "line 1: unsupported operand type(s) for +: 'int' and 'str'"},
        {"{{ 'a' + 1 }}", "can only concatenate str (not \"int\") to str"},
        {"{{ none + 1 }}", "unsupported operand type(s) for +: 'NoneType' and 'int'"},
        {"{{ x + 1 }}", "'x' is undefined"},
        {"{{ x.y }}", "'x' is undefined"},
        {"{{ messages[0].nope.deeper }}", "'dict object' has no attribute 'nope'"},
        {"{{ none[0] + 1 }}", "None has no element 0"},
        {"{{ 1 / 0 }}", "division by zero"},
        {"{{ 'a' < 1 }}", "'<' not supported between instances of 'str' and 'int'"},
        {"{{ 1 in none }}", "argument of type 'NoneType' is not iterable"},
        {"{% for t in none %}{% endfor %}", "'NoneType' object is not iterable"},
        {"{% for a, b in [[1]] %}{% endfor %}", "not enough values to unpack (expected 2, got 1)"},
        {"{{ [1].append(2) }}", "access to attribute 'append' of 'list' object is unsafe."},
        {"{{ {}.update({}) }}", "access to attribute 'update' of 'dict' object is unsafe."},
        {"{{ [1] | map(attribute='a') | tojson }}", "Object of type generator is not JSON serializable"},
        {"{{ x | tojson }}", "Object of type Undefined is not JSON serializable"},
        {"{{ [1] | select | length }}", "object of type 'generator' has no len()"},
        {"{% set s = 1 %}{% set s.a = 1 %}", "cannot assign attribute on non-namespace object"},
        {"{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}", "macro 'm' takes not more than 1 argument(s)"},
        {"{% macro m(a) %}{% endmacro %}{{ m(z=1) }}", "macro 'm' takes no keyword argument 'z'"},
        {"{{ raise_exception('System role not supported') }}", "line 1: System role not supported"},
        {"\n\n  {{ raise_exception('on line 3') }}", "line 3: on line 3"},
        {"{{ range(100001) | length }}", "Range too big"},
        {"{{ 'x'.split('') }}", "empty separator"},
        {"{{ '%s %s' % (1,) }}", "not enough arguments for format string"},
        {"{% if true %}{{ 1 | nosuch }}{% endif %}", "No filter named 'nosuch' found."},
        /* compile errors: line and column */
        {"{{ 1 | nosuch }}", "line 1, column 8: No filter named 'nosuch'."},
        {"{% for x in [1] %}\n  {{ x is nosuch }}{% endfor %}", "line 2, column 11: No test named 'nosuch'."},
        {"{{ }}", "line 1, column 4: Expected an expression, got 'end of print statement'"},
        {"a\n{% if 1 %}", "line 2, column 11: unexpected end of template: expected 'elif' or 'else' or 'endif' to close the 'if' at line 2"},
        {"{% endif %}", "line 1, column 4: Encountered unknown tag 'endif'."},
        {"x\n\n   {{ (1 }}", "line 3, column 10: unexpected '}', expected ')'"},
        {"{{ 'abc }}", "line 1, column 4: unterminated string literal"},
        {"a {# open", "line 1, column 3: missing end of comment tag"},
        {"{% set 1 = 2 %}", "line 1, column 8: can't assign to 'const'"},
        {"{% break %}", "line 1, column 4: 'break' outside of a loop"},
        {"{% macro m(a=1, b) %}{% endmacro %}", "non-default argument follows default argument"},
        {"{% include 'x' %}", "line 1, column 4: the 'include' tag is not supported"},
        {"{% for x in y recursive %}{% endfor %}", "recursive for loops are not supported"},
        {"{{ 'é' ~ é }}", "line 1, column 10: unexpected character U+00E9 in a tag"},
        {"{{ 99999999999999999999 }}", "integer literal too large"},
        {"{{ 9223372036854775807 + 1 }}", "integer overflow"},
        {"{{ [1] | random }}", "the 'random' filter is not supported"},
    };
    for (size_t i = 0; i < RL_ARRAY_LEN(E); i++) CHECK_ERR(E[i].src, E[i].want);
    /* invalid UTF-8 in the template */
    char err[256];
    rl_chat_template *t = (rl_chat_template *)1;
    CHECK(rl_chat_template_compile("ab\n\xff", 4, &t, err, sizeof(err)) == RL_ERR_BAD_FILE && t == NULL);
    CHECK(strstr(err, "line 2, column 1: invalid UTF-8") != NULL);
}

/* Undefined values: falsy, print as "", iterate as empty, compare equal to each other;
 * arithmetic, attributes and calls on them raise. bos_token not passed is undefined. */
TEST(undefined) {
    CHECK_R("[{{ nothing }}]{{ nothing is defined }}{{ not nothing }}{{ nothing | length }}{{ nothing == other }}"
            "{% for x in nothing %}x{% endfor %}{{ nothing | list }}{{ nothing | default(1) }}{{ nothing ~ 'a' }}",
            "[]FalseTrue0True[]1a");
    char *out, err[256];
    rl_chat_template_params p = rl_chat_template_default_params();
    CHECK(render_ex("[{{ bos_token }}]{{ bos_token is defined }}{{ tools is none }}", "[]", NULL, &p, &out, err,
                    sizeof(err)) == RL_OK);
    CHECK_STR(out, "[]FalseTrue");
    rl_free_string(out);
    p.add_generation_prompt = false;
    p.extra_json = "{\"enable_thinking\": false, \"n\": 1.5, \"l\": [1, \"a\"]}";
    CHECK(render_ex("{{ add_generation_prompt }}{{ enable_thinking }}{{ n }}{{ l }}{{ tools[0].x }}", "[]",
                    "[{\"x\": \"\\u00e9\\u0000y\"}]", &p, &out, err, sizeof(err)) == RL_OK);
    size_t want_len = strlen("FalseFalse1.5[1, 'a']\xc3\xa9") + 2;
    CHECK(memcmp(out, "FalseFalse1.5[1, 'a']\xc3\xa9\0y", want_len) == 0);
    rl_free_string(out);
}

/* Limits: each hostile template stops with RL_ERR_LIMIT and a message, quickly. */
TEST(limits) {
    static const struct {
        const char *src, *msg;
        uint64_t steps;
        size_t mem, out;
        int depth;
    } L[] = {
        {"{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "steps", 1000000, 0, 0, 0},
        {"{% set ns = namespace(s='x') %}{% for i in range(100) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
         "longer than 1048576 bytes", 0, 0, 1 << 20, 0},
        {"{{ 'a' * 1000000000 }}", "string repetition longer", 0, 0, 1 << 20, 0},
        {"{% for i in range(100000) %}{{ 'xxxxxxxxxx' }}{% endfor %}", "output longer than 100000 bytes", 0, 0, 100000, 0},
        {"{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "macro calls nested deeper than 20", 0, 0, 0, 20},
        {"{% set l = range(100000) | list %}{% set m = l + l + l + l %}", "bytes of memory", 0, 1 << 20, 0, 0},
        {"{% set ns = namespace(l=[]) %}{% for i in range(100000) %}{% set ns.l = ns.l + [i] %}{% endfor %}",
         "steps", 2000000, 0, 0, 0},
        {"{% set ns = namespace() %}{% set ns.a = ns %}{{ ns }}", "nested too deeply to print", 0, 0, 0, 0},
    };
    for (size_t i = 0; i < RL_ARRAY_LEN(L); i++) {
        rl_chat_template_params p = rl_chat_template_default_params();
        p.max_steps = L[i].steps;
        p.max_memory = L[i].mem;
        p.max_output = L[i].out;
        p.max_depth = L[i].depth;
        char *out = NULL, err[256];
        double t0 = (double)clock() / CLOCKS_PER_SEC;
        rl_status st = render_ex(L[i].src, "[]", NULL, &p, &out, err, sizeof(err));
        double dt = (double)clock() / CLOCKS_PER_SEC - t0;
        CHECKF(st == RL_ERR_LIMIT && strstr(err, L[i].msg), "%s: %s: %s", L[i].src, rl_status_str(st), err);
        CHECKF(out == NULL, "%s", L[i].src);
        CHECKF(dt < 20, "%s took %.1f s", L[i].src, dt);
    }
    /* deep nesting is refused at compile time (parser) or run time (left-deep chains) */
    size_t n = 300000;
    char *src = malloc(n * 2 + 16);
    size_t k = 0;
    k += (size_t)sprintf(src, "{{ a");
    for (size_t i = 1; i < n; i++) src[k++] = '+', src[k++] = 'a';
    strcpy(src + k, " }}");
    CHECK_ERR(src, "nested deeper than");
    memset(src, '(', n);
    memcpy(src, "{{ ", 3);
    strcpy(src + n, "1 }}");
    CHECK_ERR(src, "nested too deeply");
    src[0] = 0;
    for (int i = 0; i < 1000; i++) strcat(src, "{% if 1 %}");
    CHECK_ERR(src, "nested too deeply (limit 200)");
    free(src);
    /* a chain of a million nested lists is freed without recursion */
    CHECK_R("{% set ns = namespace(l=[]) %}{% for i in range(100000) %}{% set ns.l = [ns.l] %}{% endfor %}"
            "{{ ns.l | length }}",
            "1");
}

/* Thin API contract: NULL handling, bad JSON, errors name the field. */
TEST(api) {
    char err[256], *out = (char *)1;
    rl_chat_template *t = NULL;
    CHECK(rl_chat_template_compile("{{ 1 }}", 7, NULL, err, sizeof(err)) == RL_ERR_INVALID_ARG);
    CHECK(rl_chat_template_compile(NULL, 3, &t, err, sizeof(err)) == RL_ERR_INVALID_ARG && !t);
    CHECK(rl_chat_template_compile("", 0, &t, err, sizeof(err)) == RL_OK && t);
    CHECK(rl_chat_template_render(t, "[]", NULL, NULL, &out, NULL, err, sizeof(err)) == RL_OK && out && !*out);
    rl_free_string(out);
    CHECK(rl_chat_template_render(t, "[", NULL, NULL, &out, NULL, err, sizeof(err)) == RL_ERR_INVALID_ARG);
    CHECK(out == NULL && strstr(err, "messages: invalid JSON at line 1"));
    CHECK(rl_chat_template_render(t, "{}", NULL, NULL, &out, NULL, err, sizeof(err)) == RL_ERR_INVALID_ARG);
    CHECK(strstr(err, "messages: expected a JSON array") != NULL);
    CHECK(rl_chat_template_render(t, "[]", "[", NULL, &out, NULL, err, sizeof(err)) == RL_ERR_INVALID_ARG);
    CHECK(strstr(err, "tools: invalid JSON") != NULL);
    rl_chat_template_params p = rl_chat_template_default_params();
    p.extra_json = "[1]";
    CHECK(rl_chat_template_render(t, "[]", NULL, &p, &out, NULL, err, sizeof(err)) == RL_ERR_INVALID_ARG);
    CHECK(strstr(err, "extra variables: expected a JSON object") != NULL);
    CHECK(rl_chat_template_render(NULL, "[]", NULL, NULL, &out, NULL, err, sizeof(err)) == RL_ERR_INVALID_ARG);
    CHECK(rl_chat_template_render(t, NULL, NULL, NULL, &out, NULL, err, sizeof(err)) == RL_ERR_INVALID_ARG);
    CHECK(rl_chat_template_render(t, "[]", NULL, NULL, NULL, NULL, err, sizeof(err)) == RL_ERR_INVALID_ARG);
    rl_chat_template_free(t);
    rl_chat_template_free(NULL);
    rl_free_string(NULL);
    /* zero-size error buffers are fine */
    CHECK(rl_chat_template_compile("{{", 2, &t, NULL, 0) == RL_ERR_BAD_FILE);
    /* strftime_now: the pinned clock, and the real one when now < 0 */
    p = rl_chat_template_default_params();
    CHECK(render_ex("{{ strftime_now('%Y') }}", "[]", NULL, &p, &out, err, sizeof(err)) == RL_OK);
    CHECK(out && strlen(out) == 4 && atoi(out) >= 2024);
    rl_free_string(out);
}

struct thread_arg {
    const rl_chat_template *t;
    const char *want;
    int ok;
};

static void *render_thread(void *p) {
    struct thread_arg *a = p;
    rl_chat_template_params prm = rl_chat_template_default_params();
    prm.now = PINNED_NOW;
    a->ok = 1;
    for (int i = 0; i < 200; i++) {
        char *out, err[256];
        if (rl_chat_template_render(a->t, "[{\"role\":\"user\",\"content\":\"hi\"}]", NULL, &prm, &out, NULL, err,
                                    sizeof(err)) != RL_OK ||
            strcmp(out, a->want) != 0)
            a->ok = 0;
        rl_free_string(out);
    }
    return NULL;
}

/* One compiled template rendered from 4 threads at once gives the same text. */
TEST(concurrent_render) {
    const char *src = "{% set ns = namespace(n=0) %}{% for m in messages * 3 %}{% set ns.n = ns.n + 1 %}"
                      "{{ m.role | upper }}:{{ m.content }} {% endfor %}{{ ns.n }} {{ strftime_now('%d %b %Y') }}";
    rl_chat_template *t;
    char err[256];
    CHECK(rl_chat_template_compile(src, strlen(src), &t, err, sizeof(err)) == RL_OK);
    const char *want = "USER:hi USER:hi USER:hi 3 26 Jul 2024";
    pthread_t th[4];
    struct thread_arg a[4];
    for (int i = 0; i < 4; i++) {
        a[i] = (struct thread_arg){t, want, 0};
        pthread_create(&th[i], NULL, render_thread, &a[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK(a[i].ok);
    }
    rl_chat_template_free(t);
}

/* Every allocation failure on the way is a clean RL_ERR_NOMEM (no crash, no leak), and
 * the library's memory is back where it started. */
TEST(allocation_failures) {
    const char *path = rl_test_data("testdata/chat-templates/templates/Qwen-Qwen3-0.6B.jinja");
    char *src = read_text(path);
    if (!src) SKIP("no %s", path);
    const char *msgs = "[{\"role\":\"system\",\"content\":\"s\"},{\"role\":\"user\",\"content\":\"q\"},"
                       "{\"role\":\"assistant\",\"content\":\"<think>\\nr\\n</think>\\n\\na\",\"tool_calls\":"
                       "[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":{\"x\":1}}}]},"
                       "{\"role\":\"tool\",\"content\":\"r\"}]";
    const char *tools = "[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{}}}]";
    char *ref = NULL, err[256];
    rl_chat_template_params p = rl_chat_template_default_params();
    CHECK(render_ex(src, msgs, tools, &p, &ref, err, sizeof(err)) == RL_OK);
    size_t base = rl_mem_in_use();
    int nomem = 0, ok = 0;
    for (long k = 1; k < 5000; k++) {
        char *out = NULL;
        rl__alloc_fail_after(k);
        rl_status st = render_ex(src, msgs, tools, &p, &out, err, sizeof(err));
        rl__alloc_fail_after(0);
        CHECKF(st == RL_OK || st == RL_ERR_NOMEM, "k=%ld: %s: %s", k, rl_status_str(st), err);
        CHECKF(rl_mem_in_use() == base + (out ? strlen(out) + 1 : 0), "k=%ld leaks", k);
        if (st == RL_OK) {
            CHECK(strcmp(out, ref) == 0);
            ok++;
            rl_free_string(out);
            break;
        }
        nomem++;
    }
    CHECK(nomem > 100 && ok == 1);
    free(src);
    CHECK_EQ_INT(rl_mem_in_use(), base);
    rl_free_string(ref);
}

int main(void) {
    RUN(cases_json);
    RUN(expressions);
    RUN(filters);
    RUN(tests_and_methods);
    RUN(statements);
    RUN(whitespace_control);
    RUN(errors);
    RUN(undefined);
    RUN(limits);
    RUN(api);
    RUN(concurrent_render);
    RUN(allocation_failures);
    return rl_test_finish();
}
