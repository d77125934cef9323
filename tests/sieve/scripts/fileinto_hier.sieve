require "fileinto";
fileinto "Lists.dev";
