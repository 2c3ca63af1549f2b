"""The fleet: sentries sharing blocks and sightings through Redis (issue 15).

    message  keys and stream entries: encode, and validate what others wrote (pure)
    member   what a member decides: share or not, apply or refuse, sighting batches,
             the refusal line limiter (pure, injected clocks)
    spool    publications queued on disk while Redis is away (fsync, bounded)
    link     the only module that imports redis: connection, backoff, commands
    sweep    sightings and fleet sweeps weighed by spoof evidence (marks, one judge per
             source, the return-routability challenge, EVIDENCE_RESPONSE)
    wire     the fleet inside a running daemon: its two threads, the queue from the
             daemon, applying received blocks (daemon.py itself is not grown)
"""
