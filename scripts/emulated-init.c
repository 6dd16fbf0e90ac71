/* /init of the initramfs scripts/emulated-avx512.sh boots in Bochs: prints the CPU flags the
 * guest kernel sees, runs /bertling-tests with the arguments in /args (one a line), prints its
 * exit status as `BERTLING-EMULATED-EXIT <code>`, then powers the machine off (Bochs exits). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/klog.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

static void power_off(void) {
    fflush(stdout);
    tcdrain(1); /* let the serial port send the last lines first */
    sleep(1);
    sync();
    reboot(RB_POWER_OFF);
    for (;;) pause();
}

int main(void) {
    mkdir("/proc", 0755);
    mkdir("/sys", 0755);
    mkdir("/dev", 0755);
    mkdir("/tmp", 01777);
    mount("proc", "/proc", "proc", 0, NULL);
    mount("sysfs", "/sys", "sysfs", 0, NULL);
    mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
    int console = open("/dev/console", O_RDWR);
    if (console >= 0) {
        dup2(console, 0);
        dup2(console, 1);
        dup2(console, 2);
        if (console > 2) close(console);
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    klogctl(8 /* SYSLOG_ACTION_CONSOLE_LEVEL */, NULL, 1); /* no kernel messages amid the tests */
    printf("BERTLING-EMULATED-INIT\n");

    FILE *cpuinfo = fopen("/proc/cpuinfo", "r");
    static char line[16384];
    while (cpuinfo && fgets(line, sizeof line, cpuinfo)) {
        if (strncmp(line, "model name", 10) == 0) printf("BERTLING-EMULATED-MODEL %s", line);
        if (strncmp(line, "flags", 5) == 0) {
            printf("BERTLING-EMULATED-FLAGS %s", line);
            break;
        }
    }
    if (cpuinfo) fclose(cpuinfo);

    static char args_text[65536];
    char *argv[1024];
    int argc = 0;
    argv[argc++] = "/bertling-tests";
    FILE *args = fopen("/args", "r");
    size_t n = args ? fread(args_text, 1, sizeof args_text - 1, args) : 0;
    if (args) fclose(args);
    args_text[n] = 0;
    for (char *arg = strtok(args_text, "\n"); arg && argc < 1023; arg = strtok(NULL, "\n"))
        argv[argc++] = arg;
    argv[argc] = NULL;

    setenv("PATH", "/", 1);
    setenv("HOME", "/tmp", 1);
    setenv("TMPDIR", "/tmp", 1);
    setenv("RUST_BACKTRACE", "1", 1);
    printf("BERTLING-EMULATED-TESTS-BEGIN\n");
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        execv(argv[0], argv);
        perror("execv /bertling-tests");
        _exit(127);
    }
    int status = 0;
    int code = 255;
    if (child > 0 && waitpid(child, &status, 0) == child) {
        if (WIFEXITED(status))
            code = WEXITSTATUS(status);
        else if (WIFSIGNALED(status))
            code = 128 + WTERMSIG(status);
    }
    if (WIFSIGNALED(status)) printf("BERTLING-EMULATED-SIGNAL %d\n", WTERMSIG(status));
    printf("BERTLING-EMULATED-EXIT %d\n", code);
    power_off();
    return 0;
}
