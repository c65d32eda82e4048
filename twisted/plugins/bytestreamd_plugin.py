from twisted.application.service import ServiceMaker

bytestreamd = ServiceMaker(
    "bytestreamd",  # name
    "bytestreamd.tap",  # module, imported only when the plugin is used
    "XMPP bytestreams (SOCKS5, IBB) as local UNIX sockets.",  # description
    "bytestreamd",  # tapname: twistd bytestreamd
)
