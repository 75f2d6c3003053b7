"""rtpengine's ng control protocol: bencode, requests and replies, and an asyncio client.

Media relay for calls whose parties cannot reach each other's RTP (NAT): the
edge asks an rtpengine instance to rewrite each SDP to name its own ports.
"""
