"""The SIP edge: a sans-IO SIP core (``sipedge.sip``) under thin asyncio transports."""
