"""ketch.network: container networking on the host.

Bridges and veths over netlink (ketch.network.rtnl), addresses from IPAM with leases
kept in the engine's database (a connection is passed in, never opened
here), NAT, port publishing and isolation as one nftables table owned by
ketch, an embedded DNS server per container on user networks, and the
/etc/hosts and /etc/resolv.conf a container sees.

    store     tables and queries (networks, endpoints, sandboxes)
    ipam      subnets, pools, host-route collisions, address leases
    ports     -p/-P parsing, host port checks and allocation
    link      netlink: bridges, veth pairs, addresses and routes in a netns
    nft       the ruleset, rendered from the database and applied atomically
    dns       the embedded DNS server (127.0.0.11 inside the container)
    files     /etc/hosts and /etc/resolv.conf content
    host      device names per root, the default bridge, DNS server processes
    sandbox   attach/detach of one container: the order of all of the above
    manage    network create/ls/inspect/rm/connect/disconnect/prune
    reconcile clean up after a crash: dead containers, orphaned devices

A change from the design's choice of pyroute2 for netlink: importing it cost
~0.66 s on every default-bridge `ketch run` (python -X importtime), so the few
requests ketch needs are spoken directly by ketch.network.rtnl. pyroute2
stays a test dependency, to cross-check what rtnl did.
"""
