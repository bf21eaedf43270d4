#!/usr/bin/env bash
# A single-node SLURM on this machine (Debian packages), for tests/test_slurm.py and trying the
# slurm profile. Everything lives in one folder; `stop` kills exactly the daemons `start` began.
set -euo pipefail

DIR=${NNMANIFOLD_SLURM_DIR:-/tmp/nnmanifold-slurm}
CONF=$DIR/slurm.conf
# Client commands, and the srun that runs each job inside its allocation, read the default path
# (the jobstep plugin drops SLURM_* variables such as SLURM_CONF), so it links to our config.
SYSTEM_CONF=/etc/slurm/slurm.conf
DAEMONS=(munged slurmctld slurmd)
# Seconds squeue keeps finished jobs (SLURM's default, 300, is shorter than a slow test run).
MIN_JOB_AGE=65533

usage() {
    cat >&2 <<EOF
usage: $0 start|stop|status

  start   install slurm-wlm and munge if missing, start munged, slurmctld and slurmd on localhost
          (one node with two pretend GPUs, partitions cpu (default) and gpu); does nothing if
          already running with this script's config (else restarts it). Then use snakemake
          --slurm-status-command squeue (no sacct here; finished jobs stay listed $MIN_JOB_AGE s).
  stop    stop the daemons that start began and remove $DIR
  status  print whether the cluster is up, and sinfo

State (config, logs, spool, pid files) lives in \$NNMANIFOLD_SLURM_DIR (now $DIR).
Must run as root. Exit status 3: slurm-wlm and munge could not be installed.
EOF
    exit 2
}

die() {
    echo "slurm.sh: $1" >&2
    exit "${2:-1}"
}

# The PID from DAEMON's pid file if that process is alive and is DAEMON, else nothing.
pid_of() {
    local pid
    pid=$(cat "$DIR/$1.pid" 2>/dev/null) || return 0
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$1" ]] && echo "$pid"
    return 0
}

running() {
    local d
    for d in "${DAEMONS[@]}"; do
        [[ -n $(pid_of "$d") ]] || return 1
    done
}

# True when every command given is installed.
have() {
    local cmd
    for cmd; do
        command -v "$cmd" >/dev/null || return 1
    done
}

# Debian starts (and fails to start) the services on install; forbid that only for this install.
install_packages() {
    have munged slurmctld slurmd sbatch && return
    local policy=/usr/sbin/policy-rc.d saved=$DIR/policy-rc.d.saved rc=0
    [[ -e $policy ]] && cp -p "$policy" "$saved"
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    {
        apt-get update -qq &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                slurm-wlm munge
    } >"$DIR/log/install.log" 2>&1 || rc=$?
    if [[ -e $saved ]]; then mv "$saved" "$policy"; else rm -f "$policy"; fi
    ((rc == 0)) ||
        die "apt-get could not install slurm-wlm and munge: $(tail -n 5 "$DIR/log/install.log")" 3
}

write_conf() {
    local host node mem
    host=$(hostname -s)
    # This machine as slurmd sees it, with memory a little below the total (else the node drains).
    node=$(slurmd -C | head -n 1)
    mem=$(sed -E 's/.*RealMemory=([0-9]+).*/\1/' <<<"$node")
    node=$(sed -E "s/RealMemory=[0-9]+/RealMemory=$((mem * 9 / 10))/" <<<"$node")
    cat >"$CONF" <<EOF
ClusterName=nnmanifold
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.socket
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
# No slurmdbd, so sacct does not work: run snakemake with --slurm-status-command squeue, which
# sees finished jobs for MinJobAge seconds: long enough for a slow run and the test's checks.
AccountingStorageType=accounting_storage/none
MinJobAge=$MIN_JOB_AGE
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Without it a job that asks for no memory takes the whole node.
DefMemPerCPU=1000
ReturnToService=2
MailProg=/bin/true
# Two pretend GPUs (links to /dev/null): jobs request --gpus as on a GPU cluster, then use the CPU.
GresTypes=gpu
$node Gres=gpu:2 NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=cpu Nodes=ALL Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=ALL MaxTime=INFINITE State=UP
EOF
    mkdir -p "$DIR/dev"
    ln -sfn /dev/null "$DIR/dev/gpu0"
    ln -sfn /dev/null "$DIR/dev/gpu1"
    echo "NodeName=$host Name=gpu File=$DIR/dev/gpu[0-1]" >"$DIR/gres.conf"
}

start() {
    ((EUID == 0)) || die "must run as root (it installs packages and starts daemons)"
    if running && grep -qx "MinJobAge=$MIN_JOB_AGE" "$CONF"; then
        echo "SLURM already running (state in $DIR)"
        return
    fi
    [[ -d $DIR ]] && stop >/dev/null
    if [[ -e $SYSTEM_CONF && ! -L $SYSTEM_CONF ]]; then
        die "$SYSTEM_CONF exists: this machine has its own SLURM; use that one"
    fi
    mkdir -p "$DIR"/{log,spool,state,munge}
    install_packages
    chmod 755 "$DIR/munge"
    dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
    chmod 400 "$DIR/munge/munge.key"
    munged --socket="$DIR/munge/munge.socket" --key-file="$DIR/munge/munge.key" \
        --pid-file="$DIR/munged.pid" --log-file="$DIR/log/munged.log" \
        --seed-file="$DIR/munge/munged.seed" 9<&-
    write_conf
    mkdir -p "$(dirname "$SYSTEM_CONF")"
    ln -sfn "$CONF" "$SYSTEM_CONF"
    slurmctld -f "$CONF" 9<&-
    slurmd -f "$CONF" 9<&-
    for _ in $(seq 60); do
        if [[ $(sinfo -h -o %t 2>/dev/null | head -n 1) == idle ]]; then
            echo "SLURM running on $(hostname -s) (state in $DIR)"
            return
        fi
        sleep 0.5
    done
    sinfo -N -l >&2 || true
    tail -n 20 "$DIR"/log/*.log >&2 || true
    die "the node did not become idle within 30 s; logs above"
}

stop() {
    local d pid pids=()
    if [[ -n $(pid_of slurmctld) ]]; then
        squeue -h -o %i | xargs -r scancel || true
    fi
    for d in "${DAEMONS[@]}"; do
        pid=$(pid_of "$d")
        if [[ -n $pid ]]; then pids+=("$pid"); fi
    done
    if ((${#pids[@]})); then
        kill "${pids[@]}"
        for _ in $(seq 100); do
            kill -0 "${pids[@]}" 2>/dev/null || break
            sleep 0.1
        done
    fi
    [[ $(readlink "$SYSTEM_CONF" 2>/dev/null) == "$CONF" ]] && rm -f "$SYSTEM_CONF"
    rm -rf "$DIR"
    echo "SLURM stopped"
}

status() {
    if running; then
        echo "SLURM running (state in $DIR)"
        sinfo
    else
        echo "SLURM not running"
        return 1
    fi
}

[[ $# -eq 1 ]] || usage
# One command at a time: test sessions may start or stop the same cluster concurrently. The
# daemons must not inherit this lock (9<&-).
exec 9<"$0"
flock 9
case $1 in
start) start ;;
stop) stop ;;
status) status ;;
*) usage ;;
esac
