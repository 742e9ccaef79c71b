#ifndef PIN_H
#define PIN_H

#include <stddef.h>

/*
 * Public key pins as curl (--pinnedpubkey) and HPKP write them: "sha256//" and the
 * base64 of the SHA-256 of a certificate's DER SubjectPublicKeyInfo. Pure: text and
 * hashes in, results out; hashing a certificate is tlsctx.c's job.
 */

#define PIN_HASH_LEN	32		/* SHA-256 */
#define PIN_MAX		8		/* pins one upstream may list */
#define PIN_STR_LEN	(8 + 44 + 1)	/* "sha256//" + base64 of 32 bytes + NUL */

struct pinset {
	unsigned char	 hash[PIN_MAX][PIN_HASH_LEN];
	size_t		 n;
};

/**
 * pin_parse(s, hash, why, whysize):
 * Read the one pin ${s} ("sha256//" + canonical, padded base64 of 32 bytes) into
 * ${hash}; 0, or -1 with the reason in ${why}.
 */
int pin_parse(const char *s, unsigned char hash[PIN_HASH_LEN], char *why, size_t whysize);

/**
 * pin_parse_list(v, ps, why, whysize):
 * Read the comma-separated pins ${v} into ${ps} (none for an empty ${v}); 0, or -1
 * with the reason, naming the pin at fault, in ${why}. A pin listed twice is refused:
 * it is a backup pin that was meant and not pasted.
 */
int pin_parse_list(const char *v, struct pinset *ps, char *why, size_t whysize);

/**
 * pin_match(ps, chain, nchain, certp):
 * The index in ${ps} of the pin matched by the first of the ${nchain} SPKI hashes
 * ${chain} (leaf first) that matches any, with that certificate's index in *${certp}
 * (when ${certp} is not NULL); -1 if none does, or ${ps} is empty.
 */
int pin_match(const struct pinset *ps, const unsigned char (*chain)[PIN_HASH_LEN],
    size_t nchain, size_t *certp);

/**
 * pin_format(hash, out):
 * ${hash} as a pin, "sha256//BASE64", into ${out} (PIN_STR_LEN bytes).
 */
void pin_format(const unsigned char hash[PIN_HASH_LEN], char out[PIN_STR_LEN]);

/**
 * pin_list_str(hashes, n, out, size):
 * The ${n} hashes as pins joined by ", ", bounded by ${size} (cut at a whole pin,
 * then "..."); "" for none.
 */
void pin_list_str(const unsigned char (*hashes)[PIN_HASH_LEN], size_t n, char *out,
    size_t size);

#endif
