/* status.c - rl_status_str and rl_version, generated from the tables in ruvllm.h. */
#include "util.h"

#include <stdio.h>

RL_API const char *rl_status_str(rl_status s) {
    switch (s) {
#define RL__STATUS_CASE(name, text)                                                        \
    case RL_##name:                                                                        \
        return text;
        RL_STATUS_MAP(RL__STATUS_CASE)
#undef RL__STATUS_CASE
    default:
        return "unknown status";
    }
}

#define RL__STR2(x) #x
#define RL__STR(x) RL__STR2(x)

RL_API const char *rl_version(void) {
    return RL__STR(RL_VERSION_MAJOR) "." RL__STR(RL_VERSION_MINOR) "." RL__STR(RL_VERSION_PATCH);
}
