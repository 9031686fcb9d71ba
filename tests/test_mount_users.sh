#!/usr/bin/env bash
# test_mount_users.sh — other users.  (1) Two users on one `-o allow_other`
# mount (which adds default_permissions): each session belongs to its
# creator with mode 0600, so neither user can read, write, remove, rename or
# set attributes on the other's sessions until a chmod allows it; only the
# mount's owner writes `defaults`; owners survive a restart (state dir);
# --umask changes the mode.  (2) A normal user's own mount, end to end: the
# basic mount test run as that user.  Needs root (creates two system users
# and makes /dev/fuse usable by them, as CI does).
. "$(dirname "$0")/mount_lib.sh"

[ "$(id -u)" = 0 ] || fail "needs root (to add users and share /dev/fuse)"
UA=promptfs-test-a
UB=promptfs-test-b
for u in "$UA" "$UB"; do
	id "$u" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$u" ||
		fail "useradd $u"
done
as() { local u="$1"; shift; runuser -u "$u" -- "$@"; }
chmod 0711 "$PF_TMP" # the users reach the mountpoints inside, nothing else

# ---- 1. two users on one mount
STATE="$PF_TMP/state"
pf_mount "$STORIES" -o allow_other --state-dir "$STATE" -s temperature=0 -s max_tokens=8
as "$UA" sh -c "echo 'Once upon a time' >'$MNT/a1'" || fail "user A cannot create a session"
as "$UA" timeout 60 cat "$MNT/a1" >"$PF_TMP/a1" || fail "user A cannot read its own session"
[ -s "$PF_TMP/a1" ] || fail "user A's reply is empty"
[ "$(stat -c '%U %a' "$MNT/a1")" = "$UA 600" ] || fail "a1 is $(stat -c '%U %a' "$MNT/a1"), wanted $UA 600"
[ "$(stat -c '%U %a' "$MNT/history/a1")" = "$UA 400" ] || fail "history/a1 is $(stat -c '%U %a' "$MNT/history/a1")"
ok "a session belongs to its creator, mode 0600 (history 0400)"

expect_err "Permission denied" as "$UB" cat "$MNT/a1"
expect_err "Permission denied" as "$UB" cat "$MNT/history/a1"
expect_err "Permission denied" as "$UB" sh -c "echo x >'$MNT/a1'"
expect_err "Permission denied" as "$UB" sh -c "echo x >>'$MNT/a1'"
expect_err "Permission denied" as "$UB" truncate -s 0 "$MNT/a1"
expect_err "Permission denied" as "$UB" setfattr -n user.temperature -v 1 "$MNT/a1"
expect_err "Operation not permitted" as "$UB" rm -f "$MNT/a1"
expect_err "Operation not permitted" as "$UB" mv "$MNT/a1" "$MNT/stolen"
expect_err "Operation not permitted" as "$UB" chmod 666 "$MNT/a1"
as "$UB" sh -c "echo 'Once upon a time' >'$MNT/b1'" || fail "user B cannot create a session"
expect_err "Operation not permitted" as "$UA" mv "$MNT/a1" "$MNT/b1"
cmp -s "$MNT/a1" "$PF_TMP/a1" || fail "user A's reply changed"
[ "$(stat -c %U "$MNT/b1")" = "$UB" ] || fail "b1 owned by $(stat -c %U "$MNT/b1")"
ok "user B can neither read, write, truncate, setfattr, rm, mv nor chmod A's session"

expect_err "Permission denied" as "$UB" sh -c "echo 'temperature = 1' >'$MNT/defaults'"
expect_err "Permission denied" as "$UA" sh -c "echo 'temperature = 1' >>'$MNT/defaults'"
expect_err "Operation not permitted" as "$UB" setfattr -n user.temperature -v 1 "$MNT"
grep -q "^temperature = 0$" "$MNT/defaults" || fail "defaults changed: $(grep temperature "$MNT/defaults")"
echo "top_k = 5" >>"$MNT/defaults" || fail "the mount's owner cannot write defaults"
ok "only the mount's owner writes defaults"

as "$UA" chmod 644 "$MNT/a1" || fail "user A cannot chmod its session"
as "$UB" cat "$MNT/a1" >"$PF_TMP/a1.b" || fail "B cannot read after chmod 644"
cmp -s "$PF_TMP/a1.b" "$PF_TMP/a1" || fail "B reads other bytes"
expect_err "Permission denied" as "$UB" sh -c "echo x >>'$MNT/a1'"
ok "after A's chmod 644, B reads but still cannot write"
pf_umount

pf_mount "$STORIES" -o allow_other --state-dir "$STATE" --umask 022 -s temperature=0 -s max_tokens=8
[ "$(stat -c '%U %a' "$MNT/a1")" = "$UA 644" ] || fail "after restart a1 is $(stat -c '%U %a' "$MNT/a1")"
[ "$(stat -c '%U %a' "$MNT/b1")" = "$UB 600" ] || fail "after restart b1 is $(stat -c '%U %a' "$MNT/b1")"
as "$UB" sh -c ": >'$MNT/b2'" || fail "B cannot create with --umask 022"
[ "$(stat -c '%a' "$MNT/b2")" = 644 ] || fail "--umask 022 gave mode $(stat -c %a "$MNT/b2")"
expect_err "Operation not permitted" as "$UB" rm "$MNT/a1"
ok "owners and modes survive a restart; --umask 022 gives 0644"
pf_umount

# ---- 2. a normal user's own mount: the basic mount test as user A
fuse_mode="$(stat -c %a /dev/fuse)"
chmod 0666 /dev/fuse
restore_fuse() { chmod "$fuse_mode" /dev/fuse; }
trap 'restore_fuse; pf_cleanup' EXIT
out="$(as "$UA" env TMPDIR=/tmp HOME=/tmp bash "$(dirname "$0")/test_mount_basic.sh" 2>&1)" ||
	{ echo "$out" | tail -40 >&2; fail "the basic mount test fails as user $UA"; }
echo "$out" | grep '^ok' | sed 's/^/  (as '"$UA"') /'
ok "a non-root user's own mount passes the basic mount test"
ok "all"
