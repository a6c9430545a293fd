"""The async faces' shared driver: gateways, channels and groups written once over a Backend.

execwire.aio (asyncio) and execwire.trio each give a Backend (how to wait, watch a
descriptor, start a background task); everything else here is the same code for
both, over the same protocol core (execwire._far.protocol) and the same event
dispatch (BaseGateway._dispatch) as the threaded API.
"""
