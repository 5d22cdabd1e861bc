-- wrk script for storm.sh: each request presents the next app token of the
-- file given after `--`, round the list, so with more tokens than
-- auth-server remembers (10,000) every presentation is a first one. The
-- requests are formatted once, in init, so wrk spends nothing per request.
local requests, i = {}, 0
function init(args)
  for line in io.lines(args[1]) do
    requests[#requests + 1] = wrk.format("GET", nil, { Authorization = "Bearer " .. line })
  end
end
function request()
  i = i % #requests + 1
  return requests[i]
end
