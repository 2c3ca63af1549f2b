"""`scanwatch scan`: an nmap-style port scanner (nmap's options, port states and output).

Entry point: main.main(argv), called by cli.py with the raw arguments (nmap's grammar, not
click's). data/top-ports.tsv is the port table used when nmap-services is not installed.

Modules:
    main        command line -> discovery -> per-host scans -> -sV / -O -> report
    options     nmap's option grammar;  targets: nmap's target forms
    ports       nmap-services (or the shipped top-ports list), -p / -F / --top-ports
    timing      -T0..-T5, RTT estimator, the `Stats:` progress line
    discovery   ARP / ICMP / TCP ping (-sn), connect() ping without root
    connect     -sT: non-blocking connect() + epoll
    probes/     engine (retransmission and congestion window), raw (-sS -sF -sX -sN -sA
                on raw sockets with classic BPF filters), udp (-sU, ICMP-rate-limit aware),
                payloads (nmap-payloads)
    service     -sV: banner / HTTP probe matched against nmap-service-probes
    osprobe, osfp, osdb, osguess
                -O: nmap's documented probes and tests, matched against nmap-os-db
    results, output, xmlout, report
                the result model; normal, -oG, -oX and --json output
"""
