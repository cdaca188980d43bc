package gate

s := trim()
