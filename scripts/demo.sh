#!/usr/bin/env bash
# scripts/demo.sh — from a fresh machine to a streamed reply: installs the
# packages, builds, fetches the default model, mounts it on ./mnt and streams
# a reply through cat.  The mount stays up afterwards; unmount with
#   fusermount3 -u mnt
# Usage: scripts/demo.sh [MOUNTPOINT] ["prompt"]
set -euo pipefail
. "$(dirname "$0")/common.sh"
mnt="${1:-$PROMPTFS_SRC/mnt}"
prompt="${2:-Write a haiku about autumn}"
bash "$PROMPTFS_SRC/scripts/deps.sh" --no-python
bash "$PROMPTFS_SRC/scripts/build.sh"
model="$(bash "$PROMPTFS_SRC/scripts/fetch-model.sh")"
mkdir -p "$mnt"
if mountpoint -q "$mnt"; then fusermount3 -u "$mnt"; fi
log "$PROMPTFS_BUILD/promptfs $model $mnt"
"$PROMPTFS_BUILD/promptfs" "$model" "$mnt"
log "echo \"$prompt\" > $mnt/poem; cat $mnt/poem"
echo "$prompt" > "$mnt/poem"
cat "$mnt/poem"
echo
log "mounted on $mnt — try: echo \"Now one about winter\" >> $mnt/poem; cat $mnt/poem; ls -l $mnt; cat $mnt/stats"
log "unmount with: fusermount3 -u $mnt"
