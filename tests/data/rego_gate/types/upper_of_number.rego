package gate

name := upper(1)
