# The second example of the document pynisher started from, verbatim but for the range
# (shortened from 5 to 4 so the demo is quick).
import pynisher
import time

def my_function (t):
    print("Going to sleep for %f seconds" % t)
    time.sleep(t)
    return(t)

for t in range(4):
    obj = pynisher.enforce_limits(wall_time_in_s=2, capture_output=True)(my_function)
    result = obj(t)
    print(
        result, obj.result, obj.exit_status, obj.wall_clock_time,
        obj.stdout, obj.stderr, obj.exitcode,
    )
