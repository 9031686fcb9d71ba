/*
 * fuzz_settings.c — libFuzzer target for the settings parsers: `defaults`
 * text (fs/ctl.c: fs_ctl_defaults_apply, lines of key = value, comments,
 * escapes) and xattr values (engine/settings.c: eng_settings_set).
 *
 * The first byte picks the parser.  Defaults: the text is applied (replace
 * or merge); when it is accepted, the rendered `defaults` file must apply
 * again and render byte-identically (what `cat defaults > defaults` does).
 * Xattr values: the second byte picks the key; an accepted value must read
 * back (eng_settings_get) and set again to the same formatted value.
 *
 * Built by the fuzz tree (cmake -DPROMPTFS_FUZZ=ON with clang; see
 * scripts/test.sh): ctests fuzz_settings_corpus and fuzz_settings_timed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/fs_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define VCAP (ENG_MAX_SYSTEM + 1024)

static void defaults_case(const char *text, size_t len, bool replace)
{
	struct fs fs;
	char *out1 = NULL, *out2 = NULL;
	size_t n1 = 0, n2 = 0;

	memset(&fs, 0, sizeof(fs));
	eng_settings_default(NULL, &fs.defaults);
	if (fs_ctl_defaults_apply(&fs, text, len, replace) == 0) {
		if (fs_ctl_content(&fs, FS_INO_DEFAULTS, &out1, &n1) < 0)
			goto out;
		if (fs_ctl_defaults_apply(&fs, out1, n1, true) != 0)
			abort(); /* the rendered file must be accepted */
		if (fs_ctl_content(&fs, FS_INO_DEFAULTS, &out2, &n2) < 0)
			goto out;
		if (n1 != n2 || memcmp(out1, out2, n1))
			abort(); /* and render the same */
	}
out:
	free(out1);
	free(out2);
	eng_settings_free(&fs.defaults);
}

static void xattr_case(int key, const char *val, size_t len)
{
	struct eng_settings st;
	char *a = malloc(VCAP), *b = malloc(VCAP);
	const char *k = eng_settings_keys[key % ENG_KEY_COUNT];

	eng_settings_default(NULL, &st);
	if (a && b && eng_settings_set(&st, k, val, len) == 0) {
		int na = eng_settings_get(&st, k, a, VCAP);
		if (na < 0 || na >= VCAP || eng_settings_set(&st, k, a, (size_t)na) != 0)
			abort(); /* what getfattr shows must set again */
		int nb = eng_settings_get(&st, k, b, VCAP);
		if (nb != na || memcmp(a, b, (size_t)na))
			abort();
	}
	eng_settings_free(&st);
	free(a);
	free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool quiet;
	char *copy;

	if (!quiet) {
		pf_log_set_level(-1);
		quiet = true;
	}
	if (size < 2)
		return 0;
	copy = malloc(size - 2 ? size - 2 : 1);
	if (!copy)
		return 0;
	memcpy(copy, data + 2, size - 2);
	if (data[0] & 1)
		xattr_case(data[1], copy, size - 2);
	else
		defaults_case(copy, size - 2, data[0] & 2);
	free(copy);
	return 0;
}
