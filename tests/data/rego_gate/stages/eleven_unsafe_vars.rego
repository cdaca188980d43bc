package gate

a1 := x1 if true
a2 := x2 if true
a3 := x3 if true
a4 := x4 if true
a5 := x5 if true
a6 := x6 if true
a7 := x7 if true
a8 := x8 if true
a9 := x9 if true
a10 := x10 if true
a11 := x11 if true
