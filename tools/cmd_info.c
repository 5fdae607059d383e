/* cmd_info.c - `ruvllm info FILE [--json]` (the GGUF reader provides the content). */
#include "cli.h"

#include <stdio.h>

int cmd_info(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "ruvllm info: GGUF reader not built yet\n");
    return 1;
}
