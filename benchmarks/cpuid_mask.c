/* LD_PRELOAD library: the process sees a CPU without AVX-512, AMX or AVX-VNNI, so ONNX Runtime (MLAS), numpy and
 * the rest pick their AVX2 kernels. Lets one machine measure the code path an AVX2-only CPU runs.
 *
 * How: Linux's CPUID faulting (arch_prctl ARCH_SET_CPUID, 0; the "cpuid_fault" flag in /proc/cpuinfo) makes every
 * CPUID instruction raise SIGSEGV; the handler runs the real CPUID with faulting briefly off, clears the feature
 * bits, and steps over the instruction. The setting is per thread and inherited by threads created later; execve
 * resets it, so child processes need the preload too (LD_PRELOAD is inherited).
 *
 * Build: cc -O2 -shared -fPIC -o cpuid_mask.so cpuid_mask.c      Used by benchmarks/isa_levels.py.
 */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <cpuid.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

/* leaf 7, subleaf 0 */
#define EBX_MASK ((1u << 16) | (1u << 17) | (1u << 21) | (1u << 26) | (1u << 27) | (1u << 28) | (1u << 30) | (1u << 31))
#define ECX_MASK ((1u << 1) | (1u << 6) | (1u << 11) | (1u << 12) | (1u << 14))
#define EDX_MASK ((1u << 2) | (1u << 3) | (1u << 8) | (1u << 22) | (1u << 23) | (1u << 24) | (1u << 25))
/* leaf 7, subleaf 1: AVX-VNNI, AVX512_BF16, AMX-FP16, AVX-IFMA */
#define EAX1_MASK ((1u << 4) | (1u << 5) | (1u << 21) | (1u << 23))

static long set_cpuid(unsigned long on) { return syscall(SYS_arch_prctl, ARCH_SET_CPUID, on); }

static void on_segv(int sig, siginfo_t *info, void *context) {
    (void)info;
    greg_t *r = ((ucontext_t *)context)->uc_mcontext.gregs;
    const unsigned char *ip = (const unsigned char *)r[REG_RIP];
    if (ip[0] != 0x0f || ip[1] != 0xa2) {   /* a real crash: let it happen */
        signal(sig, SIG_DFL);
        return;
    }
    unsigned leaf = (unsigned)r[REG_RAX], sub = (unsigned)r[REG_RCX], a, b, c, d;
    set_cpuid(1);
    __cpuid_count(leaf, sub, a, b, c, d);
    set_cpuid(0);
    if (leaf == 7 && sub == 0) {
        b &= ~EBX_MASK;
        c &= ~ECX_MASK;
        d &= ~EDX_MASK;
    } else if (leaf == 7 && sub == 1) {
        a &= ~EAX1_MASK;
    }
    r[REG_RAX] = a;
    r[REG_RBX] = b;
    r[REG_RCX] = c;
    r[REG_RDX] = d;
    r[REG_RIP] += 2;
}

__attribute__((constructor)) static void mask_cpuid(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigaction(SIGSEGV, &sa, NULL);
    if (set_cpuid(0) != 0)
        fprintf(stderr, "cpuid_mask: this CPU or kernel has no CPUID faulting; features are NOT masked\n");
}
