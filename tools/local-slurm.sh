#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for testing the workflow's
# SLURM profile (profiles/slurm) against sbatch, squeue and sacct, not a mock.
#
#   tools/local-slurm.sh start    install (Debian packages) and start munge, MariaDB,
#                                 slurmdbd, slurmctld and slurmd on localhost
#   tools/local-slurm.sh status   sinfo and the accounting association
#   tools/local-slurm.sh stop     stop the daemons
#   tools/local-slurm.sh ensure   what `make test` runs: nothing if a cluster answers,
#                                 `start` as root on Debian, else a note that the
#                                 SLURM test will be skipped
#
# Needs root and Debian's apt (slurm-wlm 22.05, munge, slurmdbd, mariadb-server).
# The cluster is named "local", its partition "debug", its account "rs-test":
# the values tests/test_slurm.py passes to the profile instead of a real site's.
set -euo pipefail

CLUSTER=local
PARTITION=debug
ACCOUNT=rs-test
HOST=$(hostname -s)
CONF=/etc/slurm
SPOOL=/var/spool/slurm
LOGS=/var/log/slurm

log() { printf '[local-slurm] %s\n' "$*"; }

install_packages() {
  if command -v slurmctld >/dev/null && command -v slurmdbd >/dev/null && command -v munged >/dev/null \
    && command -v mariadbd >/dev/null; then
    return
  fi
  log "installing slurm-wlm, slurmdbd, munge and mariadb-server from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends slurm-wlm slurmdbd munge mariadb-server >/dev/null
}

start_munge() {
  if pgrep -x munged >/dev/null; then return; fi
  mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
  if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  fi
  chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
  chmod 0700 /etc/munge /var/lib/munge /var/log/munge
  chmod 0400 /etc/munge/munge.key
  chmod 0755 /run/munge
  runuser -u munge -- /usr/sbin/munged
  log "munged started"
}

start_mariadb() {
  if ! pgrep -x mariadbd >/dev/null; then
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
    (mysqld_safe --user=mysql >/dev/null 2>&1 &)
    for _ in $(seq 60); do mysqladmin ping >/dev/null 2>&1 && break; sleep 1; done
    log "mariadb started"
  fi
  mysql -u root <<'SQL'
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
FLUSH PRIVILEGES;
SQL
}

write_configs() {
  local cpus mem
  cpus=$(nproc)
  mem=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
  mkdir -p "$CONF" "$SPOOL/ctld" "$SPOOL/d" "$LOGS"
  cat >"$CONF/slurmdbd.conf" <<CONF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
LogFile=$LOGS/slurmdbd.log
PidFile=/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
CONF
  chmod 600 "$CONF/slurmdbd.conf"
  cat >"$CONF/slurm.conf" <<CONF
# Single-node test cluster written by tools/local-slurm.sh
ClusterName=$CLUSTER
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$SPOOL/ctld
SlurmdSpoolDir=$SPOOL/d
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageEnforce=associations
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
AccountingStoreFlags=job_comment
MinJobAge=600
NodeName=$HOST CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
}

start_slurm() {
  pgrep -x slurmdbd >/dev/null || { slurmdbd; log "slurmdbd started"; }
  for _ in $(seq 30); do sacctmgr -n list cluster >/dev/null 2>&1 && break; sleep 1; done
  sacctmgr -i add cluster "$CLUSTER" >/dev/null 2>&1 || true
  sacctmgr -i add account "$ACCOUNT" Cluster="$CLUSTER" Description="rewarded-soups tests" >/dev/null 2>&1 || true
  sacctmgr -i add user "$(id -un)" Account="$ACCOUNT" Cluster="$CLUSTER" >/dev/null 2>&1 || true
  if pgrep -x slurmctld >/dev/null; then scontrol reconfigure; else slurmctld; log "slurmctld started"; fi
  pgrep -x slurmd >/dev/null || { slurmd; log "slurmd started"; }
  for _ in $(seq 60); do
    if sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
      log "cluster $CLUSTER up: partition $PARTITION, account $ACCOUNT, node $HOST"
      return
    fi
    scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true
    sleep 1
  done
  log "the node did not come up; see $LOGS/slurmctld.log and $LOGS/slurmd.log" >&2
  exit 1
}

case "${1:-}" in
  start)
    [ "$(id -u)" -eq 0 ] || { log "needs root (it installs packages and starts daemons)" >&2; exit 2; }
    install_packages
    start_munge
    start_mariadb
    write_configs
    start_slurm
    ;;
  ensure)
    if command -v sinfo >/dev/null && sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
      exit 0
    fi
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
      # A cluster that cannot start must not stop the rest of the suite: say so loudly instead.
      "$0" start || log "WARNING: could not start a local SLURM (see above): tests/test_slurm.py will be skipped"
      exit 0
    fi
    log "no SLURM cluster and not root on Debian: tests/test_slurm.py will be skipped"
    ;;
  status)
    sinfo
    sacctmgr -n show associations format=cluster,account,user
    ;;
  stop)
    pkill -x slurmd || true
    pkill -x slurmctld || true
    pkill -x slurmdbd || true
    log "slurm daemons stopped (munged and mariadb left running)"
    ;;
  *)
    echo "usage: $0 start|ensure|status|stop" >&2
    exit 2
    ;;
esac
