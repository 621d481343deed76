"""rpc.py plugin for the jraid bdev module.

    PYTHONPATH=scripts /opt/jraid-spdk/v26.01/spdk/scripts/rpc.py --plugin jraid_rpc bdev_jraid_create \\
        -n r0 -z 64 -b "m0 m1 m2 m3" -j jl
    PYTHONPATH=scripts /opt/jraid-spdk/v26.01/spdk/scripts/rpc.py --plugin jraid_rpc bdev_jraid_get_bdevs [-n r0]
    PYTHONPATH=scripts /opt/jraid-spdk/v26.01/spdk/scripts/rpc.py --plugin jraid_rpc bdev_jraid_delete -n r0
    PYTHONPATH=scripts /opt/jraid-spdk/v26.01/spdk/scripts/rpc.py --plugin jraid_rpc bdev_jraid_set_journal \\
        -n r0 -j jl2
"""

import json


def _print(result):
    print(json.dumps(result, indent=2))


def bdev_jraid_create(client, name, strip_size_kb, base_bdevs, journal_bdev=None, volume=None,
                      uuid=None, journal=True, max_stripe_state_mb=None, journal_bdevs=None,
                      journal_mode=None, assume_clean=False):
    """Create (or, with the uuid its members carry, re-assemble) a jraid RAID-5 volume. The
    journal is one bdev (journal_bdev) or two (journal_bdevs, journal_mode "alternate" or
    "mirror"). A new volume initialises its parity in the background unless assume_clean says
    every member reads as zeros."""
    params = {
        'name': name,
        'strip_size_kb': strip_size_kb,
        'base_bdevs': base_bdevs,
    }
    if journal_bdevs:
        params['journal_bdevs'] = journal_bdevs
    else:
        params['journal_bdev'] = journal_bdev
    if journal_mode is not None:
        params['journal_mode'] = journal_mode
    if volume is not None:
        params['volume'] = volume
    if uuid is not None:
        params['uuid'] = uuid
    if not journal:
        params['journal'] = False  # comparison runs only; not persisted
    if max_stripe_state_mb is not None:
        params['max_stripe_state_mb'] = max_stripe_state_mb
    if assume_clean:
        params['assume_clean'] = True
    return client.call('bdev_jraid_create', params)


def bdev_jraid_delete(client, name):
    """Stop a jraid volume and release its bdevs. Like SPDK's bdev_raid_delete, this writes
    nothing: the superblocks stay, and examine re-assembles the volume when its bdevs register
    again (the next start, or a re-created passthru). To reuse the bdevs, create a new volume
    on them (bdev_jraid_create without a uuid formats them)."""
    return client.call('bdev_jraid_delete', {'name': name})


def bdev_jraid_get_bdevs(client, name=None):
    """State of every jraid volume (or of one)."""
    params = {'name': name} if name is not None else None
    return client.call('bdev_jraid_get_bdevs', params)


def bdev_jraid_add_base_bdev(client, name, base_bdev, bandwidth_mb=None, window=None):
    """Replace the failed member of a jraid volume with base_bdev and rebuild it in the
    background (progress under "rebuild" in bdev_jraid_get_bdevs)."""
    params = {'name': name, 'base_bdev': base_bdev}
    if bandwidth_mb is not None:
        params['bandwidth_mb'] = bandwidth_mb
    if window is not None:
        params['window'] = window
    return client.call('bdev_jraid_add_base_bdev', params)


def bdev_jraid_scrub(client, name, repair=False, window=None, bandwidth_mb=None):
    """Check every stripe's parity in the background (results under "scrub" in
    bdev_jraid_get_bdevs); with repair, rewrite the parity of mismatching stripes."""
    params = {'name': name, 'repair': repair}
    if window is not None:
        params['window'] = window
    if bandwidth_mb is not None:
        params['bandwidth_mb'] = bandwidth_mb
    return client.call('bdev_jraid_scrub', params)


def bdev_jraid_set_journal(client, name, journal_bdev, window=None, bandwidth_mb=None):
    """Give a volume whose journal failed or was removed a new journal: every stripe's parity
    is resynced first (progress under "set_journal" in bdev_jraid_get_bdevs; writes are refused
    until it is attached). Also brings up a volume held back at start-up because its journal
    is missing."""
    params = {'name': name, 'journal_bdev': journal_bdev}
    if window is not None:
        params['window'] = window
    if bandwidth_mb is not None:
        params['bandwidth_mb'] = bandwidth_mb
    return client.call('bdev_jraid_set_journal', params)


def spdk_rpc_plugin_initialize(subparsers):
    def create(args):
        _print(bdev_jraid_create(args.client, name=args.name, strip_size_kb=args.strip_size_kb,
                                 base_bdevs=args.base_bdevs.split(),
                                 journal_bdev=args.journal_bdev,
                                 journal_bdevs=args.journal_bdevs.split() if args.journal_bdevs
                                 else None, journal_mode=args.journal_mode, volume=args.volume,
                                 uuid=args.uuid, journal=args.journal,
                                 max_stripe_state_mb=args.max_stripe_state_mb,
                                 assume_clean=args.assume_clean))

    p = subparsers.add_parser('bdev_jraid_create',
                              help='Create a RAID-5 volume with a dirty-stripe journal')
    p.add_argument('-n', '--name', required=True, help='volume bdev name')
    p.add_argument('-z', '--strip-size-kb', dest='strip_size_kb', type=int, required=True,
                   help='strip size in KiB (power of two, 4..1024)')
    p.add_argument('-b', '--base-bdevs', dest='base_bdevs', required=True,
                   help='member bdev names, whitespace separated, in member order')
    p.add_argument('-j', '--journal-bdev', dest='journal_bdev',
                   help='journal bdev (may be shared by several volumes)')
    p.add_argument('--journal-bdevs', dest='journal_bdevs',
                   help='two journal bdevs, whitespace separated (instead of --journal-bdev)')
    p.add_argument('--journal-mode', dest='journal_mode', choices=['alternate', 'mirror'],
                   help='with two journal bdevs: records alternate over them (default) or go to both')
    p.add_argument('--volume', type=int, help='volume number on the journal')
    p.add_argument('--uuid', help='volume uuid (the members\' uuid re-assembles the volume)')
    p.add_argument('--no-journal', dest='journal', action='store_false',
                   help='run without the journal (write hole open; for comparisons only)')
    p.add_argument('--max-stripe-state-mb', dest='max_stripe_state_mb', type=int,
                   help='memory a new volume may take for per-stripe state, MiB (default 1024)')
    p.add_argument('--assume-clean', dest='assume_clean', action='store_true',
                   help='every member reads as zeros (blank or deallocated devices): skip the '
                   'initial parity pass')
    p.set_defaults(func=create)

    def delete(args):
        _print(bdev_jraid_delete(args.client, name=args.name))

    p = subparsers.add_parser('bdev_jraid_delete',
                              help='Stop a jraid volume (superblocks stay; examine re-assembles it)')
    p.add_argument('-n', '--name', required=True, help='volume bdev name')
    p.set_defaults(func=delete)

    def get_bdevs(args):
        _print(bdev_jraid_get_bdevs(args.client, name=args.name))

    p = subparsers.add_parser('bdev_jraid_get_bdevs', help='Show jraid volumes')
    p.add_argument('-n', '--name', help='only this volume')
    p.set_defaults(func=get_bdevs)

    def add_base_bdev(args):
        _print(bdev_jraid_add_base_bdev(args.client, name=args.name, base_bdev=args.base_bdev,
                                        bandwidth_mb=args.bandwidth_mb, window=args.window))

    p = subparsers.add_parser('bdev_jraid_add_base_bdev',
                              help='Replace the failed member of a jraid volume and rebuild it')
    p.add_argument('-n', '--name', required=True, help='volume bdev name')
    p.add_argument('-b', '--base-bdev', dest='base_bdev', required=True, help='replacement bdev')
    p.add_argument('--bandwidth-mb', dest='bandwidth_mb', type=int,
                   help='rebuild rate cap in MiB/s (default: none)')
    p.add_argument('--window', type=int, help='stripes rebuilt concurrently (default 16)')
    p.set_defaults(func=add_base_bdev)

    def scrub(args):
        _print(bdev_jraid_scrub(args.client, name=args.name, repair=args.repair,
                                window=args.window, bandwidth_mb=args.bandwidth_mb))

    p = subparsers.add_parser('bdev_jraid_scrub',
                              help='Check (and with --repair fix) the parity of every stripe')
    p.add_argument('-n', '--name', required=True, help='volume bdev name')
    p.add_argument('-r', '--repair', action='store_true',
                   help='rewrite the parity of mismatching stripes')
    p.add_argument('--window', type=int, help='stripes checked concurrently (default 32)')
    p.add_argument('--bandwidth-mb', dest='bandwidth_mb', type=int,
                   help='rate cap in MiB/s of stripe data (default: none)')
    p.set_defaults(func=scrub)

    def set_journal(args):
        _print(bdev_jraid_set_journal(args.client, name=args.name, journal_bdev=args.journal_bdev,
                                      window=args.window, bandwidth_mb=args.bandwidth_mb))

    p = subparsers.add_parser('bdev_jraid_set_journal',
                              help='Attach a new journal after the old one was lost (full resync first)')
    p.add_argument('-n', '--name', required=True, help='volume bdev name')
    p.add_argument('-j', '--journal-bdev', dest='journal_bdev', required=True,
                   help='new journal bdev (formatted), or a running journal of other volumes')
    p.add_argument('--window', type=int, help='stripes resynced concurrently (default 32)')
    p.add_argument('--bandwidth-mb', dest='bandwidth_mb', type=int,
                   help='resync rate cap in MiB/s of stripe data (default: none)')
    p.set_defaults(func=set_journal)
