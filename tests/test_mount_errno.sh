#!/usr/bin/env bash
# test_mount_errno.sh — the README's errno table and settings rules, case by
# case, where they once differed from the daemon: renameat2 flags, unknown
# xattrs, `key = value # comment` in defaults, hex / inf / nan numbers,
# truncate to the current size, pwrite offsets.
. "$(dirname "$0")/mount_lib.sh"

PY="${PROMPTFS_PYTHON:-python3}"
[ -x "$PY" ] || PY=python3
pf_mount "$STORIES" -s temperature=0 -s max_tokens=4

# ---- renameat2: RENAME_NOREPLACE works, RENAME_EXCHANGE / RENAME_WHITEOUT are EINVAL
echo "Once" >"$MNT/r1"
echo "Twice" >"$MNT/r2"
"$PY" - "$MNT" <<'EOF' || fail "renameat2 flags"
import ctypes, errno, os, sys
libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD, NOREPLACE, EXCHANGE, WHITEOUT = -100, 1, 2, 4
def rn(a, b, flags):
    r = libc.renameat2(AT_FDCWD, a.encode(), AT_FDCWD, b.encode(), flags)
    return 0 if r == 0 else ctypes.get_errno()
m = sys.argv[1]
assert rn(f"{m}/r1", f"{m}/r2", NOREPLACE) == errno.EEXIST
assert rn(f"{m}/r1", f"{m}/r3", WHITEOUT) == errno.EINVAL, "whiteout"
assert rn(f"{m}/r1", f"{m}/r2", EXCHANGE) == errno.EINVAL, "exchange"
assert os.path.exists(f"{m}/r1") and not os.path.exists(f"{m}/r3")
assert rn(f"{m}/r1", f"{m}/r3", NOREPLACE) == 0
EOF
ok "renameat2: NOREPLACE → EEXIST, WHITEOUT and EXCHANGE → EINVAL (nothing renamed)"

# ---- unknown xattrs: set → ENOTSUP, get → ENODATA
expect_err "Operation not supported" setfattr -n user.nosuch -v 1 "$MNT/r3"
expect_err "No such attribute" getfattr -n user.nosuch "$MNT/r3"
expect_err "Operation not supported" setfattr -n user.nosuch -v 1 "$MNT"
ok "unknown user.* xattr: setfattr ENOTSUP, getfattr ENODATA"

# ---- defaults: an inline comment, \# for a literal '#'
printf 'temperature = 0.5   # warmer\nsystem = use \\# for headings # a comment\n' >"$MNT/defaults" ||
	fail "defaults refused an inline comment"
grep -qx "temperature = 0.5" "$MNT/defaults" || fail "temperature after the comment: $(grep temperature "$MNT/defaults")"
grep -qxF 'system = use \# for headings' "$MNT/defaults" || fail "system: $(grep system "$MNT/defaults")"
cp "$MNT/defaults" "$PF_TMP/d"
cat "$PF_TMP/d" >"$MNT/defaults" || fail "cat defaults > defaults refused"
cmp -s "$PF_TMP/d" "$MNT/defaults" || fail "defaults do not round-trip"
ok "defaults: 'key = value # comment' accepted, '\\#' is a literal '#', the file round-trips"

# ---- numbers are decimal: no hex, inf, nan
for v in 0x10 0X1p3 inf nan 1e400 " 0x1"; do
	printf 'temperature = %s\n' "$v" >"$PF_TMP/line" # dd reports the error close() returns
	expect_err "Invalid argument" dd if="$PF_TMP/line" of="$MNT/defaults" oflag=append conv=notrunc status=none
done
# (setfattr reads "0x..." as hex-encoded bytes: os.setxattr passes the text)
"$PY" - "$MNT/r3" <<'EOF' || fail "xattr numbers"
import errno, os, sys
for key, v in [("temperature", "0x10"), ("temperature", "inf"), ("temperature", "nan"),
               ("top_k", "0x10"), ("seed", "0x10"), ("max_tokens", " 0x1"), ("top_p", "0x0.8p0")]:
    try:
        os.setxattr(sys.argv[1], "user." + key, v.encode())
    except OSError as e:
        assert e.errno == errno.EINVAL, (key, v, e)
    else:
        raise AssertionError(f"user.{key} = {v!r} accepted")
EOF
setfattr -n user.temperature -v 1.5e-1 "$MNT/r3" || fail "1.5e-1 refused"
grep -qx "temperature = 0.5" "$MNT/defaults" || fail "a refused line changed the defaults"
ok "hex, inf, nan and overflow refused (EINVAL, nothing changed); 1.5e-1 accepted"

# ---- truncate: 0 resets, the current size is a no-op, anything else EINVAL
timeout 60 cat "$MNT/r3" >/dev/null
size="$(stat -c %s "$MNT/r3")"
truncate -s "$size" "$MNT/r3" || fail "truncate to the current size failed"
[ "$(xattr turns "$MNT/r3")" = 1 ] || fail "truncate to the current size changed the session"
expect_err "Invalid argument" truncate -s $((size + 1)) "$MNT/r3"
ok "truncate to the current size ($size) is a no-op; to another non-zero size EINVAL"

# ---- pwrite: the prompt is the bytes in the order written; offsets do not matter
"$PY" - "$MNT/pw" <<'EOF' || fail "pwrite"
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
os.pwrite(fd, b"Once", 100)
os.pwrite(fd, b" upon", 0)
os.close(fd)
EOF
timeout 60 cat "$MNT/pw" >/dev/null
grep -qx "Once upon" "$MNT/history/pw" || fail "pwrite prompt: $(head -3 "$MNT/history/pw")"
ok "pwrite at offsets 100 then 0: the prompt is 'Once upon' (write order)"
pf_umount
ok "all"
