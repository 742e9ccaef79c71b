#ifndef JWT_H
#define JWT_H

#include <stddef.h>

/**
 * jwt_rs256(key_pem, iss, sub, scope, aud, now, lifetime, out, size, err, errsize):
 * Write into ${out} the signed JWT assertion of Google's service-account flow (RFC 7523):
 * base64url({"alg":"RS256","typ":"JWT"}) "." base64url({"iss":iss[,"sub":sub],"scope":
 * scope,"aud":aud,"iat":now,"exp":now+lifetime}) "." base64url(RSASSA-PKCS1-v1_5 SHA-256
 * signature), no padding. ${key_pem} is the unencrypted PEM private key as the key file's
 * private_key field holds it (real newlines); it must be RSA. ${sub} NULL or "" leaves
 * "sub" out. Return 0, or -1 with the reason in ${err} (key not PEM, not RSA, a bad
 * ${lifetime}, or ${out} too small: then ${out} holds "" and nothing past ${size} is
 * written). The caller wipes ${out} after use: it is a credential until it expires.
 */
int jwt_rs256(const char *key_pem, const char *iss, const char *sub, const char *scope,
    const char *aud, long long now, long lifetime, char *out, size_t size, char *err,
    size_t errsize);

#endif
