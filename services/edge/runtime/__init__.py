"""The edge's I/O: sockets, the driver that runs the proxy core on the event loop, the start-up.

Everything that touches a socket, the clock, a process or the store at start
lives here; the proxy core (`services.edge.proxy`) and its policies stay
sans-IO, and `services.edge.feeds` keeps their caches current.  One process's
start-up is `startup.start_edge`: the service's process runs it as worker 0,
`pool.WorkerPool` starts the extra workers (`worker_main`), which run it too.
"""
