require ["variables","fileinto"];
set :lower "a" "MiXeD";
set :upper "b" "MiXeD";
set :lowerfirst "c" "MiXeD";
set :upperfirst "d" "miXeD";
set :length "e" "12345";
set :upper :lowerfirst "f" "hello";
fileinto "${a}.${b}.${c}.${d}.${e}.${f}";
