#!/usr/bin/env bash
# A throw-away single-node SLURM cluster on this Debian/Ubuntu machine, for trying the cluster path
# (workflows/profiles/slurm) and for tests/test_cluster.py. Needs root.
#
#   sudo bash scripts/local_slurm.sh check   # can it run here? prints the reason and exits 1 if not
#   sudo bash scripts/local_slurm.sh up      # install slurm-wlm + munge if missing, write the config, start daemons
#   eval "$(bash scripts/local_slurm.sh env)"   # SLURM_CONF and PATH for sbatch/squeue/scancel and Snakemake
#   sudo bash scripts/local_slurm.sh down    # stop exactly the daemons `up` started (by pid), delete the state dir
#
# Everything it writes lives in one state directory, $REPRO_SLURM_DIR (default /tmp/repro-slurm): slurm.conf, a fresh
# munge key and socket, spool and state directories, logs and the pids of the daemons it started. It never writes
# /etc/slurm or /etc/munge and never uses the system munged. It refuses to start where SLURM is already configured
# or running (a /etc/slurm/slurm.conf, a SLURM_CONF it did not write, a running slurmctld or slurmd, the SLURM ports
# in use) and to stop or delete anything it did not start (the state directory carries a marker file).
# SLURM_CONF is how clients find this config; the SLURM executor plugin's job step (snakemake-executor-plugin-slurm-
# jobstep) drops every SLURM_* variable before its inner `srun`, which on a real cluster then reads /etc/slurm/slurm.conf.
# Here that file must not be written, so `env` also puts $STATE/bin first on PATH: an `srun` that restores SLURM_CONF
# and runs the real srun.
# One partition `local` (the default), SelectType=select/cons_tres with CR_Core_Memory, the node's real CPU count
# and memory (`slurmd -C`), no accounting (so status comes from squeue: MinJobAge keeps finished jobs visible).
set -euo pipefail

STATE="${REPRO_SLURM_DIR:-${TMPDIR:-/tmp}/repro-slurm}"
STATE="$(realpath -m "$STATE")"
CONF="$STATE/slurm.conf"
MARKER="$STATE/.written-by-repro-local-slurm"
PORT="${REPRO_SLURM_PORT:-6817}"  # slurmctld; slurmd listens on PORT+1
PACKAGES=(slurm-wlm munge)
BINARIES=(munged slurmctld slurmd sbatch squeue scancel scontrol sinfo)

say() { echo "[local_slurm] $*" >&2; }
die() { say "$*"; exit 1; }

missing_binaries() {
    local b out=()
    for b in "${BINARIES[@]}"; do
        command -v "$b" >/dev/null 2>&1 || [[ -x "/usr/sbin/$b" ]] || out+=("$b")
    done
    echo "${out[*]:-}"
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Why this machine cannot host the throw-away cluster (empty: it can). Reads only.
why_not() {
    [[ "$(uname -s)" == Linux ]] || { echo "not Linux"; return; }
    [[ "$(id -u)" == 0 ]] || { echo "needs root (installs packages, runs slurmd as root)"; return; }
    if [[ -n "$(missing_binaries)" ]] && ! command -v apt-get >/dev/null 2>&1; then
        echo "SLURM/munge not installed ($(missing_binaries)) and no apt-get to install them"; return
    fi
    if [[ -f "$MARKER" ]]; then return; fi  # ours: `up` reports it as already up
    local f
    for f in /etc/slurm/slurm.conf /etc/slurm-llnl/slurm.conf; do
        [[ -e "$f" ]] && { echo "an existing SLURM configuration is present ($f): not touching it"; return; }
    done
    if [[ -n "${SLURM_CONF:-}" && "$(realpath -m "$SLURM_CONF")" != "$CONF" ]]; then
        echo "SLURM_CONF=$SLURM_CONF points at another SLURM configuration: not touching it"; return
    fi
    local d
    for d in slurmctld slurmd; do
        pgrep -x "$d" >/dev/null 2>&1 && { echo "a $d is already running on this machine: not touching it"; return; }
    done
    for d in "$PORT" "$((PORT + 1))"; do
        port_in_use "$d" && { echo "port $d is in use (set REPRO_SLURM_PORT to another base port)"; return; }
    done
    if [[ -e "$STATE" && -n "$(ls -A "$STATE" 2>/dev/null)" ]]; then
        echo "$STATE exists and was not written by this script (set REPRO_SLURM_DIR elsewhere)"; return
    fi
}

install_packages() {
    [[ -z "$(missing_binaries)" ]] && return
    say "installing ${PACKAGES[*]} with apt-get (missing: $(missing_binaries))"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >&2
    [[ -z "$(missing_binaries)" ]] || die "still missing after apt-get install: $(missing_binaries)"
}

# The node line from the real hardware: every logical CPU schedulable as a core (so a job's CPU count is exactly
# what it asked for, also with hyper-threading), the memory slurmd measures.
node_line() {
    local host="$1" hw cpus mem
    hw="$(slurmd -C | head -1)"
    cpus="$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$hw")"
    mem="$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$hw")"
    [[ -n "$cpus" && -n "$mem" ]] || die "cannot read CPUs/RealMemory from 'slurmd -C': $hw"
    echo "NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus Sockets=1 CoresPerSocket=$cpus ThreadsPerCore=1 RealMemory=$mem State=UNKNOWN"
}

write_config() {
    local host="$1"
    mkdir -p "$STATE"/{munge,ctld,spool,log,bin}
    chmod 700 "$STATE" "$STATE/munge"
    echo "written by scripts/local_slurm.sh up; 'down' stops the daemons in $STATE/pids and deletes this directory" \
        >"$MARKER"
    head -c 1024 /dev/urandom >"$STATE/munge/munge.key"
    chmod 400 "$STATE/munge/munge.key"
    printf '#!/bin/sh\n# restores the config the SLURM job step dropped (see scripts/local_slurm.sh)\nexport SLURM_CONF=%s\nexec %s "$@"\n' \
        "$CONF" "$(command -v srun)" >"$STATE/bin/srun"
    chmod 755 "$STATE/bin/srun"
    cat >"$CONF" <<EOF
# Throw-away single-node cluster written by scripts/local_slurm.sh; deleted by 'local_slurm.sh down'.
ClusterName=repro-local
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$STATE/munge/munge.socket
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
ReturnToService=2
# no accounting: job states come from squeue, so finished jobs stay visible for 10 minutes
MinJobAge=600
KillWait=5
InactiveLimit=0
SlurmdTimeout=60
$(node_line "$host")
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
    local secs="$1" what="$2"; shift 2
    local i
    for ((i = 0; i < secs * 4; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.25
    done
    die "timed out after ${secs}s waiting for $what (logs: $STATE/log/)"
}

record_pid() {  # record_pid NAME PIDFILE
    wait_for 20 "$1 to write $2" test -s "$2"
    echo "$1 $(cat "$2")" >>"$STATE/pids"
}

node_idle() { SLURM_CONF="$CONF" sinfo -h -N -o %t | grep -qx 'idle'; }

up() {
    if [[ -f "$MARKER" && -s "$STATE/pids" ]] && all_alive; then
        say "already up: eval \"\$(bash $0 env)\""; echo "$CONF"; return
    fi
    [[ -f "$MARKER" ]] && { say "stale state in $STATE: cleaning it first"; down; }
    local reason; reason="$(why_not)"
    [[ -z "$reason" ]] || die "refusing: $reason"
    install_packages
    local host; host="$(hostname -s)"
    write_config "$host"
    : >"$STATE/pids"
    munged --key-file="$STATE/munge/munge.key" --socket="$STATE/munge/munge.socket" \
        --pid-file="$STATE/munge/munged.pid" --log-file="$STATE/log/munged.log" \
        --seed-file="$STATE/munge/munged.seed" --force
    record_pid munged "$STATE/munge/munged.pid"
    slurmctld -f "$CONF" -c -i
    record_pid slurmctld "$STATE/slurmctld.pid"
    slurmd -f "$CONF" -N "$host"
    record_pid slurmd "$STATE/slurmd.pid"
    wait_for 60 "the node to become idle" node_idle
    say "up: 1 node, $(SLURM_CONF="$CONF" sinfo -h -N -o '%c CPUs, %m MB'); eval \"\$(bash $0 env)\" to use it"
    echo "$CONF"
}

# a recorded pid is ours only while its command line is still the daemon we started with our state dir
is_ours() {
    local pid="$1" cmd
    cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
    [[ "$cmd" == *"$STATE"* ]]
}

all_alive() {
    local name pid
    while read -r name pid; do is_ours "$pid" || return 1; done <"$STATE/pids"
}

down() {
    [[ -e "$STATE" ]] || { say "nothing to stop ($STATE does not exist)"; return; }
    [[ -f "$MARKER" ]] || die "refusing: $STATE was not written by this script"
    if [[ -s "$STATE/pids" ]] && grep -q '^slurmctld ' "$STATE/pids"; then
        # cancel this cluster's jobs first so no job step outlives slurmd
        SLURM_CONF="$CONF" timeout 10 scancel --quiet --state=PENDING,RUNNING,SUSPENDED --user=root 2>/dev/null || true
        local i
        for ((i = 0; i < 40; i++)); do
            [[ -z "$(SLURM_CONF="$CONF" timeout 5 squeue -h -t R,CG 2>/dev/null)" ]] && break
            sleep 0.25
        done
    fi
    local name pid
    # stop in reverse start order: slurmd, slurmctld, munged
    if [[ -s "$STATE/pids" ]]; then
        while read -r name pid; do
            if is_ours "$pid"; then
                kill -TERM "$pid" 2>/dev/null || true
                # until the process is gone, not just its command line (an exiting process shows an empty one)
                for ((i = 0; i < 60; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
                if kill -0 "$pid" 2>/dev/null; then
                    say "$name ($pid) ignored SIGTERM for 15s: SIGKILL"
                    kill -KILL "$pid" 2>/dev/null || true
                    sleep 0.5
                fi
                say "stopped $name ($pid)"
            fi
        done < <(tac "$STATE/pids")
    fi
    rm -rf "$STATE"
    say "down: removed $STATE"
}

case "${1:-}" in
    check) reason="$(why_not)"; if [[ -n "$reason" ]]; then echo "$reason"; exit 1; fi ;;
    up) up ;;
    down) down ;;
    conf) echo "$CONF" ;;
    env) printf 'export SLURM_CONF=%q\nexport PATH=%q:"$PATH"\n' "$CONF" "$STATE/bin" ;;
    status)
        [[ -f "$MARKER" ]] || { echo "down"; exit 1; }
        SLURM_CONF="$CONF" sinfo -N -l && SLURM_CONF="$CONF" squeue ;;
    *) echo "usage: $0 check|up|down|env|conf|status   (state dir: \$REPRO_SLURM_DIR, default /tmp/repro-slurm)" >&2
       exit 2 ;;
esac
