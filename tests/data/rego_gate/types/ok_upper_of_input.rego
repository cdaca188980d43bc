package gate

name := upper(input.name)
