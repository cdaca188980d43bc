package gate[x]

allow if true
