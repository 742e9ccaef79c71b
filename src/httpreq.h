#ifndef HTTPREQ_H
#define HTTPREQ_H

#include <stddef.h>

/*
 * The one HTTP request the metrics endpoint reads: a request line and headers, no
 * body, bounded. Pure: bytes in, a verdict out.
 */

/* Most bytes of a request, request line and headers together. */
#define HTTPREQ_MAX	4096

enum httpreq_result {
	HTTPREQ_MORE,		/* the headers have not ended yet: read on */
	HTTPREQ_OK,		/* GET /metrics */
	HTTPREQ_BAD,		/* malformed or over HTTPREQ_MAX: 400 */
	HTTPREQ_NOT_FOUND,	/* another path: 404 */
	HTTPREQ_METHOD		/* another method: 405 */
};

/**
 * httpreq_parse(p, len):
 * Judge the ${len} bytes read so far of a request: HTTPREQ_MORE until the empty line
 * that ends the headers has arrived (HTTPREQ_BAD once ${len} reaches HTTPREQ_MAX
 * without it), then the verdict on the request line "METHOD SP TARGET SP HTTP/1.x"
 * and the header lines ("name: value"). A query string after the path is ignored.
 * Lines end in CRLF or a bare LF. A NUL or another control byte in the head is BAD,
 * even before the head has ended; once a verdict is not MORE, more bytes never change it.
 */
enum httpreq_result httpreq_parse(const char *p, size_t len);

/**
 * httpreq_status(r):
 * The status line text for a final verdict, e.g. "200 OK".
 */
const char *httpreq_status(enum httpreq_result r);

#endif
