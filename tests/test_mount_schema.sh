#!/usr/bin/env bash
# test_mount_schema.sh — JSON schemas through a real FUSE mount on the real
# default model:
#   - schemas/: cp, cat (cmp), ls, mv, rm; a schema with an unsupported
#     keyword fails cp's close with EINVAL and the log names the keyword;
#     user.json_schema with one is EINVAL too; user.schema naming no file
#     in schemas/ is EINVAL;
#   - 10 replies under each of 5 schemas (2 bound by name from schemas/,
#     3 inline as user.json_schema), 50 sessions at once at temperature 0.8,
#     all end at end of turn, parse with Python's json and validate against
#     their schema with jsonschema (Draft 2020-12, formats checked);
#   - with --state-dir: after a remount schemas/ and grammars/ are back,
#     sessions keep user.schema / user.json_schema, and their next turn is
#     still constrained (validates); a journal in the old format (written
#     by hand as journal.c documents it: name, a setting, a turn) loads;
#   - greedy under a schema through the mount = promptfs run --json-schema.
. "$(dirname "$0")/mount_lib.sh"
: "${PROMPTFS_MODEL:?PROMPTFS_MODEL not set}"
: "${PROMPTFS_PYTHON:?PROMPTFS_PYTHON not set}"
[ -f "$PROMPTFS_MODEL" ] || fail "the real model $PROMPTFS_MODEL is missing (scripts/fetch-model.sh)"
N="${N_PER_SCHEMA:-10}"
STATE="$PF_TMP/state"
S="$PF_TMP/schemas"
mkdir -p "$S" "$STATE"

cat >"$S/person.json" <<'EOF'
{"type": "object", "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 24},
 "age": {"type": "integer", "minimum": 0, "maximum": 130}}, "required": ["name", "age"], "additionalProperties": false}
EOF
cat >"$S/colour.json" <<'EOF'
{"type": "object", "properties": {"colour": {"enum": ["red", "green", "blue"]},
 "shade": {"type": "string", "maxLength": 12}}, "required": ["colour"]}
EOF
cat >"$S/list.json" <<'EOF'
{"type": "object", "properties": {"items": {"type": "array", "items": {"type": "string", "maxLength": 16},
 "minItems": 1, "maxItems": 3}}, "required": ["items"]}
EOF
cat >"$S/point.json" <<'EOF'
{"$defs": {"coord": {"type": "integer", "minimum": -100, "maximum": 100}}, "type": "object",
 "properties": {"x": {"$ref": "#/$defs/coord"}, "y": {"$ref": "#/$defs/coord"},
 "label": {"type": ["string", "null"], "maxLength": 10}}, "required": ["x", "y"]}
EOF
cat >"$S/event.json" <<'EOF'
{"type": "object", "properties": {"date": {"type": "string", "format": "date"},
 "kind": {"oneOf": [{"const": "meeting"}, {"const": "call"}]},
 "people": {"type": "object", "properties": {"lead": {"type": "string", "maxLength": 20}}, "required": ["lead"]},
 "done": {"type": "boolean"}}, "required": ["date", "kind", "people"]}
EOF

# an old-format journal (journal.c's records, as main writes them): it must load
printf 'promptfs-journal 1\nN 3\nold\nS 11 3\ntemperature0.5\nT 5 6\nhelloworld!\n' \
	>"$STATE/00000000000000aa.journal"

pf_mount "$PROMPTFS_MODEL" --state-dir "$STATE" -s temperature=0.8 -s max_tokens=200 --max-sessions 64

[ -d "$MNT/schemas" ] && ls "$MNT" | grep -qx schemas || fail "no schemas/ folder at the root"
[ "$(xattr temperature "$MNT/old")" = 0.5 ] || fail "the old-format journal's setting: $(xattr temperature "$MNT/old")"
[ "$(sed -n '/^### user$/,$p' "$MNT/history/old")" = "$(printf '### user\nhello\n### assistant\nworld!')" ] \
	|| fail "the old-format journal's turn: $(cat "$MNT/history/old")"
ok "an old-format journal loads (name, setting, turn)"

# ---- the folder
cp "$S/person.json" "$S/colour.json" "$MNT/schemas/" || fail "cp into schemas/"
for f in person.json colour.json; do cmp -s "$S/$f" "$MNT/schemas/$f" || fail "cat schemas/$f differs"; done
[ "$(ls "$MNT/schemas" | tr '\n' ' ')" = "colour.json person.json " ] || fail "ls schemas/: $(ls "$MNT/schemas")"
cp "$S/list.json" "$MNT/schemas/tmp.json" && mv "$MNT/schemas/tmp.json" "$MNT/schemas/moved.json" \
	&& cmp -s "$S/list.json" "$MNT/schemas/moved.json" && rm "$MNT/schemas/moved.json" \
	&& [ ! -e "$MNT/schemas/moved.json" ] || fail "mv/rm in schemas/"
echo '{"type": "object", "properties": {"a": {"type": "string", "pattern": "^x+$"}}}' >"$PF_TMP/bad.json"
if cp "$PF_TMP/bad.json" "$MNT/schemas/bad.json" 2>"$PF_TMP/cp.err"; then fail "a schema with pattern was accepted"; fi
grep -q "Invalid argument" "$PF_TMP/cp.err" || fail "cp error is not EINVAL: $(cat "$PF_TMP/cp.err")"
grep -q 'json_schema bad.json: #/properties/a: keyword "pattern" is not supported' "$PF_TMP/daemon.log" \
	|| fail "the log does not name the keyword and where: $(tail -3 "$PF_TMP/daemon.log")"
[ -e "$MNT/schemas/bad.json" ] && fail "a refused schema is listed"
: >"$MNT/x"
if setfattr -n user.json_schema -v '{"type": "array", "uniqueItems": true}' "$MNT/x" 2>/dev/null; then
	fail "user.json_schema with uniqueItems accepted"
fi
grep -q 'keyword "uniqueItems" is not supported' "$PF_TMP/daemon.log" || fail "uniqueItems not named in the log"
if setfattr -n user.schema -v nonexistent.json "$MNT/x" 2>/dev/null; then fail "user.schema of a missing file accepted"; fi
rm "$MNT/x"
ok "schemas/: cp, cat, ls, mv, rm; unsupported keywords refused with EINVAL, keyword named"

# ---- 10 replies under each of 5 schemas, all at once
declare -A PROMPT=(
	[person]="Invent a person: give their name and age as JSON."
	[colour]="Pick a colour and describe its shade as JSON."
	[list]="List a few fruits as JSON."
	[point]="Give a point on a grid with a short label as JSON."
	[event]="Describe a work event in 2024 (date, kind, who leads it) as JSON."
)
pids=()
for k in person colour list point event; do
	for i in $(seq "$N"); do
		s="$k$i"
		: >"$MNT/$s" || fail "create $s"
		setfattr -n user.seed -v "$i" "$MNT/$s"
		case $k in
		person | colour) setfattr -n user.schema -v "$k.json" "$MNT/$s" || fail "user.schema of $s" ;;
		*) setfattr -n user.json_schema -v "$(cat "$S/$k.json")" "$MNT/$s" || fail "user.json_schema of $s" ;;
		esac
		echo "${PROMPT[$k]}" >"$MNT/$s" &
		pids+=($!)
	done
done
t0=$(date +%s)
for p in "${pids[@]}"; do wait "$p" || fail "a prompt write failed"; done
for k in person colour list point event; do
	for i in $(seq "$N"); do
		timeout 900 cat "$MNT/$k$i" >"$PF_TMP/$k$i.out" || fail "cat $k$i"
		xattr status "$MNT/$k$i" >"$PF_TMP/$k$i.status"
	done
done
t1=$(date +%s)

validate() { # PREFIX...: every PREFIX.out against the schema of its name
	"$PROMPTFS_PYTHON" - "$PF_TMP" "$S" "$@" <<'EOF'
import json, os, re, sys
import jsonschema
d, sdir, names = sys.argv[1], sys.argv[2], sys.argv[3:]
V = jsonschema.Draft202012Validator
bad = []
for s in names:
    k = re.sub(r"[0-9]+$", "", s)
    schema = json.load(open(f"{sdir}/{k}.json"))
    st = open(f"{d}/{s}.status").read().strip()
    text = open(f"{d}/{s}.out", encoding="utf-8").read()
    try:
        assert st == "done (end of turn)", f"status {st!r}"
        errs = [e.message for e in V(schema, format_checker=V.FORMAT_CHECKER).iter_errors(json.loads(text))]
        assert not errs, errs[0]
    except Exception as e:
        bad.append((s, str(e), text[:200]))
for b in bad:
    print("INVALID:", b, file=sys.stderr)
print(f"{len(names) - len(bad)}/{len(names)} replies parse and validate against their schema")
sys.exit(1 if bad else 0)
EOF
}
names=()
for k in person colour list point event; do for i in $(seq "$N"); do names+=("$k$i"); done; done
validate "${names[@]}" || fail "replies do not all validate"
ok "$((5 * N)) concurrent replies under 5 schemas parse and validate ($((t1 - t0)) s)"

# ---- remount with the state dir: schemas, settings, constraint
cp "$PROMPTFS_SRC/tests/grammars/json.gbnf" "$MNT/grammars/" || fail "cp json.gbnf"
getfattr --absolute-names --only-values -n user.json_schema "$MNT/point1" >"$PF_TMP/point1.js"
pf_unmount_wait() {
	fusermount3 -u "$MNT" || fail "unmount"
	pf_wait_exit "$DPID" 60
}
pf_unmount_wait
[ -f "$STATE/schemas/person.json" ] && [ -f "$STATE/grammars/json.gbnf" ] || fail "state dir lacks the files: $(ls -R "$STATE")"
pf_mount "$PROMPTFS_MODEL" --state-dir "$STATE" -s temperature=0.8 -s max_tokens=200 --max-sessions 64
[ "$(ls "$MNT/schemas" | tr '\n' ' ')" = "colour.json person.json " ] || fail "schemas/ after remount: $(ls "$MNT/schemas")"
cmp -s "$S/person.json" "$MNT/schemas/person.json" || fail "schemas/person.json changed across the remount"
cmp -s "$PROMPTFS_SRC/tests/grammars/json.gbnf" "$MNT/grammars/json.gbnf" || fail "grammars/json.gbnf after remount"
[ "$(xattr schema "$MNT/person1")" = person.json ] || fail "user.schema after remount: $(xattr schema "$MNT/person1")"
getfattr --absolute-names --only-values -n user.json_schema "$MNT/point1" | cmp -s - "$PF_TMP/point1.js" \
	|| fail "user.json_schema after remount"
for s in person1 point1; do # the next turn, as <name>91 for validate
	echo "Another one, please." >>"$MNT/$s"
	timeout 300 cat "$MNT/$s" >"$PF_TMP/${s%1}91.out" || fail "cat $s after remount"
	xattr status "$MNT/$s" >"$PF_TMP/${s%1}91.status"
done
validate person91 point91 || fail "turns after the remount are not constrained by their schema"
ok "after a remount: schemas/, grammars/, user.schema and user.json_schema are back; new turns validate"

# ---- greedy under a schema: the mount = promptfs run --json-schema (same engine path)
prompt="Invent a person as JSON."
: >"$MNT/g0"
setfattr -n user.json_schema -v "$(cat "$S/person.json")" "$MNT/g0"
setfattr -n user.temperature -v 0 "$MNT/g0"
setfattr -n user.max_tokens -v 64 "$MNT/g0"
echo "$prompt" >"$MNT/g0"
timeout 300 cat "$MNT/g0" >"$PF_TMP/g0" || fail "cat g0"
timeout 300 "$PROMPTFS_BIN" run "$PROMPTFS_MODEL" "$prompt" --temp 0 -n 64 --json-schema "$S/person.json" \
	>"$PF_TMP/g0.ref" 2>/dev/null || fail "promptfs run --json-schema"
[ "$(cat "$PF_TMP/g0")" = "$(cat "$PF_TMP/g0.ref")" ] || fail "mount and run differ: $(cat "$PF_TMP/g0") vs $(cat "$PF_TMP/g0.ref")"
ok "greedy under a schema: mount = promptfs run --json-schema"
