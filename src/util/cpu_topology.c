/*
 * cpu_topology.c - how many physical cores this process may use, and in which order the
 * thread pool pins its threads: one CPU per physical core first, then the SMT siblings
 * (read from /sys/devices/system/cpu/cpuN/topology).
 */
#include "threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>

static bool read_int_file(const char *path, long *out) {
    FILE *f = fopen(path, "r");
    if (!f) return false;
    bool ok = fscanf(f, "%ld", out) == 1;
    fclose(f);
    return ok;
}

/* The CPUs this process may run on, one per physical core first (the first CPU seen of
 * each distinct (package, core) pair in /sys/devices/system/cpu/cpuN/topology), then the
 * SMT siblings. Returns the number of physical cores (the length of the first part);
 * without sysfs every CPU counts as a core. */
static int cpu_order(int *cpus, int *n_cpus) {
    cpu_set_t set;
    CPU_ZERO(&set);
    *n_cpus = 0;
    if (sched_getaffinity(0, sizeof set, &set) != 0) return 0;
    static long pairs[CPU_SETSIZE][2];
    int sib[CPU_SETSIZE];
    int n_pairs = 0, n_sib = 0;
    bool sysfs = true;
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (!CPU_ISSET(cpu, &set)) continue;
        char path[128];
        long core = cpu, pkg = 0;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%d/topology/core_id", cpu);
        if (!sysfs || !read_int_file(path, &core)) {
            sysfs = false;
            core = cpu;
        }
        snprintf(path, sizeof path,
                 "/sys/devices/system/cpu/cpu%d/topology/physical_package_id", cpu);
        if (sysfs && !read_int_file(path, &pkg)) pkg = 0;
        bool seen = false;
        for (int i = 0; i < n_pairs && !seen; i++)
            seen = pairs[i][0] == pkg && pairs[i][1] == core;
        if (seen) {
            sib[n_sib++] = cpu;
        } else {
            pairs[n_pairs][0] = pkg;
            pairs[n_pairs][1] = core;
            cpus[n_pairs++] = cpu;
        }
    }
    memcpy(cpus + n_pairs, sib, (size_t)n_sib * sizeof *sib);
    *n_cpus = n_pairs + n_sib;
    return n_pairs;
}

static pthread_mutex_t g_topo_lock = PTHREAD_MUTEX_INITIALIZER;

int rl__cpu_list(int *cpus, int max) {
    int all[CPU_SETSIZE], n;
    pthread_mutex_lock(&g_topo_lock); /* cpu_order's table is static: 16 KiB off the stack */
    cpu_order(all, &n);
    pthread_mutex_unlock(&g_topo_lock);
    if (n > max) n = max;
    memcpy(cpus, all, (size_t)n * sizeof *all);
    return n;
}

RL_API int rl_cpu_physical_cores(void) {
    int cpus[CPU_SETSIZE], n;
    pthread_mutex_lock(&g_topo_lock);
    int cores = cpu_order(cpus, &n);
    pthread_mutex_unlock(&g_topo_lock);
    return cores > 0 ? cores : 1;
}
