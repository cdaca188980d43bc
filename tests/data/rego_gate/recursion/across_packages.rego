# module: one.rego
package one

import data.two

a if two.b
# module: two.rego
package two

b if data.one.a
