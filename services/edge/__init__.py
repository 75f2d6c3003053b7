"""SIP edge proxy: the front door for phones, Asterisk boxes and carriers."""
