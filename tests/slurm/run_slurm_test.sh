#!/usr/bin/env bash
# SLURM integration test: a real single-node SLURM (slurmctld + slurmd + munge), the
# workflow's REAL profile (profiles/slurm), a tiny config, one small target that
# includes a (GPU-free) training job. Passes when every job went through sbatch,
# SLURM reports each one COMPLETED, and the outputs are complete.
#
#   bash tests/slurm/run_slurm_test.sh            # or: make test-slurm
#
# Needs root and apt-get (installs slurm-wlm + munge when sbatch is missing); anywhere
# else it prints one SKIP line and exits 0. The recipe and its pitfalls are in
# /work/shared/hpc/slurm-local.md (config at /etc/slurm/slurm.conf, squeue status
# without slurmdbd, MinJobAge so finished jobs stay visible to scontrol).
#
# Environment: WORKFLOW_SRC (default: this checkout) the workflow copied; PROFILE (default profiles/slurm) lets you point the same test at a
# deliberately broken profile to see it fail; TARGET the file to build;
# KEEP=1 keeps the temporary directory.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/../.." && pwd)"
PROFILE="$(cd "${PROFILE:-$REPO/profiles/slurm}" && pwd)"
TARGET="${TARGET:-results/train/srcnn/real/alpha/model.pt}"
SRC="$(cd "${WORKFLOW_SRC:-$REPO}" && pwd)"   # where Snakefile, rules/, workflow/ ... are copied from
CONFIG="$REPO/tests/configs/tiny_slurm.yaml"   # shared with tests/test_rerun.py and tests/test_isbi.py
PY="${PYTHON:-$REPO/.venv/bin/python}"
SNAKEMAKE="$(dirname "$PY")/snakemake"

[ -f "$CONFIG" ] || { echo "test-slurm: the test config $CONFIG is missing"; exit 1; }
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "SKIP test-slurm: needs root and apt-get to install and start a local SLURM (run it in CI or a root container)"
    exit 0
fi
if ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
    echo "test-slurm: installing slurm-wlm and munge (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi
if [ -e /etc/slurm/slurm.conf ] && [ ! -L /etc/slurm/slurm.conf ]; then
    echo "SKIP test-slurm: /etc/slurm/slurm.conf is a real SLURM configuration; not touching this machine's cluster"
    exit 0
fi

STATE="$(mktemp -d /tmp/srseg-slurm.XXXXXX)"
HOST="$(hostname)"
MEM_MB=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
CPUS="$(nproc)"
WORK="$STATE/work"
PIDS=()

cleanup() {
    rc=$?
    # stop exactly the daemons this script started, by the pids in their pidfiles
    stopped=()
    for pidfile in "$STATE/run/slurmd.pid" "$STATE/run/slurmctld.pid" "$STATE/munge/munged.pid"; do
        [ -s "$pidfile" ] && pid="$(cat "$pidfile")" && kill "$pid" 2>/dev/null && stopped+=("$pid") || true
    done
    # slurmctld saves its state as it shuts down: wait for the daemons to exit before removing
    # $STATE (removing it under a writing daemon fails with "Directory not empty")
    for _ in $(seq 100); do
        alive=0
        for pid in "${stopped[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && break
        sleep 0.2
    done
    if [ "$(readlink /etc/slurm/slurm.conf 2>/dev/null)" = "$STATE/slurm.conf" ]; then rm -f /etc/slurm/slurm.conf; fi
    if [ "$rc" != 0 ]; then
        echo "test-slurm FAILED (rc=$rc); snakemake log tail:"; tail -n 40 "$STATE/snakemake.log" 2>/dev/null || true
        echo "slurmctld log tail:"; tail -n 15 "$STATE/log/slurmctld.log" 2>/dev/null || true
    fi
    [ "${KEEP:-0}" = 1 ] && echo "kept $STATE" || rm -rf "$STATE"
    exit "$rc"
}
trap cleanup EXIT

mkdir -p "$STATE"/{munge,state,spool,log,run}
chown munge:munge "$STATE/munge"
chmod 755 "$STATE" "$STATE/munge"   # pitfall 1: munged needs an executable socket directory
cat > "$STATE/slurm.conf" <<EOF
ClusterName=srsegtest
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$STATE/munge/munge.socket.2
StateSaveLocation=$STATE/state
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=600
NodeName=$HOST CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
# the partition names profiles/slurm uses (CPU: main, GPU rules: gpu), so the profile runs unchanged
PartitionName=main Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$HOST Default=NO MaxTime=INFINITE State=UP
EOF
mkdir -p /etc/slurm
ln -sf "$STATE/slurm.conf" /etc/slurm/slurm.conf   # pitfall 2: the jobstep needs the default path

runuser -u munge -- /usr/sbin/munged --socket="$STATE/munge/munge.socket.2" \
    --key-file=/etc/munge/munge.key --pid-file="$STATE/munge/munged.pid" \
    --log-file="$STATE/munge/munged.log" --seed-file="$STATE/munge/munged.seed"
/usr/sbin/slurmctld -f /etc/slurm/slurm.conf
/usr/sbin/slurmd -f /etc/slurm/slurm.conf
for _ in $(seq 60); do
    sinfo -h -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)' && break
    sleep 1
done
sinfo -h -o "%P %t %D" | grep -qE 'idle|mix|alloc' || { echo "test-slurm: the node never became idle"; sinfo; exit 1; }
echo "test-slurm: SLURM up on $HOST (partitions main and gpu, $CPUS CPUs, $MEM_MB MB)"

# A copy of the workflow with the tiny config (only what differs from the schema's defaults,
# which the workflow layers under it) as its config.yaml; the profile is the repo's.
mkdir -p "$WORK"
cp -r "$SRC"/Snakefile "$SRC"/rules "$SRC"/workflow "$SRC"/schemas "$SRC"/report "$SRC"/envs "$WORK"/
cp "$CONFIG" "$WORK/config.yaml"
cd "$WORK"
export PATH="$(dirname "$PY"):$PATH"   # sbatch jobs run `python -m snakemake` from this venv

# Test overrides only: squeue status (no slurmdbd here), a short first status check,
# no retries (a failure shows at once), 2 jobs. Partitions, memory and runtime come from
# the profile: this cluster has its `main` and `gpu` partitions.
SECONDS=0
set +e
timeout 900 "$SNAKEMAKE" "$TARGET" --profile "$PROFILE" \
    --slurm-status-command squeue --slurm-init-seconds-before-status-checks 5 \
    --jobs 2 --latency-wait 5 --retries 0 > "$STATE/snakemake.log" 2>&1
rc=$?
set -e
echo "test-slurm: snakemake finished in ${SECONDS}s with exit code $rc"
[ "$rc" = 0 ] || exit "$rc"
"$PY" "$REPO/tests/slurm/check_slurm_run.py" "$STATE/snakemake.log" "$WORK" "$TARGET"
