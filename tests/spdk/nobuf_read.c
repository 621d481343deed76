/*
 * nobuf_read: an SPDK app that reads from a bdev with no data buffer (iov_base NULL), as SPDK's
 * iSCSI target and zero-copy callers do: the bdev module must ask the bdev layer for a buffer
 * (spdk_bdev_io_get_buf). It reads each length given on the command line, in order, and prints
 * one line per read: "read <bytes>: success" or "read <bytes>: failed". A module that answers a
 * read larger than SPDK's largest I/O buffer with NOMEM makes the bdev layer retry it forever:
 * this app then never prints that line, and its caller's timeout catches the hang.
 *
 *   nobuf_read --json CONFIG [SPDK app options] -- BDEV BYTES...
 *
 * Exit status: 0 when every read completed (either way), 1 otherwise.
 */
#include "spdk/stdinc.h"
#include "spdk/bdev.h"
#include "spdk/event.h"
#include "spdk/log.h"
#include "spdk/string.h"
#include "spdk/thread.h"

static const char *g_bdev_name;
static char **g_lens;
static int g_nlens;
static int g_next;
static struct spdk_bdev_desc *g_desc;
static struct spdk_io_channel *g_ch;
static int g_rc;

static void next_read(void);

static void
finish(int rc)
{
	g_rc = rc;
	if (g_ch != NULL) {
		spdk_put_io_channel(g_ch);
		g_ch = NULL;
	}
	if (g_desc != NULL) {
		spdk_bdev_close(g_desc);
		g_desc = NULL;
	}
	spdk_app_stop(rc);
}

static void
read_done(struct spdk_bdev_io *bdev_io, bool success, void *arg)
{
	printf("read %s: %s\n", g_lens[g_next], success ? "success" : "failed");
	fflush(stdout);
	spdk_bdev_free_io(bdev_io);
	g_next++;
	next_read();
}

static void
next_read(void)
{
	struct spdk_bdev *bdev = spdk_bdev_desc_get_bdev(g_desc);
	uint32_t bs = spdk_bdev_get_block_size(bdev);
	uint64_t bytes;
	int rc;

	if (g_next == g_nlens) {
		finish(0);
		return;
	}
	bytes = strtoull(g_lens[g_next], NULL, 0);
	if (bytes == 0 || bytes % bs != 0) {
		fprintf(stderr, "nobuf_read: %s is not a multiple of the block size %u\n", g_lens[g_next], bs);
		finish(1);
		return;
	}
	rc = spdk_bdev_read_blocks(g_desc, g_ch, NULL, 0, bytes / bs, read_done, NULL);
	if (rc != 0) {
		fprintf(stderr, "nobuf_read: submit of %s bytes: %s\n", g_lens[g_next], spdk_strerror(-rc));
		finish(1);
	}
}

static void
bdev_event(enum spdk_bdev_event_type type, struct spdk_bdev *bdev, void *ctx)
{
}

static void
start(void *arg)
{
	int rc = spdk_bdev_open_ext(g_bdev_name, false, bdev_event, NULL, &g_desc);

	if (rc != 0) {
		fprintf(stderr, "nobuf_read: open %s: %s\n", g_bdev_name, spdk_strerror(-rc));
		finish(1);
		return;
	}
	g_ch = spdk_bdev_get_io_channel(g_desc);
	if (g_ch == NULL) {
		fprintf(stderr, "nobuf_read: no I/O channel for %s\n", g_bdev_name);
		finish(1);
		return;
	}
	next_read();
}

int
main(int argc, char **argv)
{
	struct spdk_app_opts opts = {};
	int i, rc;

	for (i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
	}
	if (argc - i < 3) {
		fprintf(stderr, "usage: %s --json CONFIG [SPDK app options] -- BDEV BYTES...\n", argv[0]);
		return 1;
	}
	g_bdev_name = argv[i + 1];
	g_lens = &argv[i + 2];
	g_nlens = argc - i - 2;
	argc = i;

	spdk_app_opts_init(&opts, sizeof(opts));
	opts.name = "nobuf_read";
	rc = spdk_app_parse_args(argc, argv, &opts, NULL, NULL, NULL, NULL);
	if (rc != SPDK_APP_PARSE_ARGS_SUCCESS) {
		return 1;
	}
	rc = spdk_app_start(&opts, start, NULL);
	spdk_app_fini();
	return rc == 0 && g_rc == 0 ? 0 : 1;
}
